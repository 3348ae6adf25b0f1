"""Settings fail loudly on bad configuration (checked in a fresh interpreter)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.single_pass
ROOT = Path(__file__).resolve().parents[2]


def _start_env() -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "CELERY_"))}
    return {**clean, "DJANGO_SETTINGS_MODULE": "agency.settings", "AGENCY_DOTENV": "false"}


def _start(**env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT,
        env={**_start_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_starts_with_no_environment_at_all():
    result = _start()
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


@pytest.mark.parametrize("name", ["DJANGO_DEBUG", "TRACING_ENABLED", "LOG_CLIENT_IP"])
def test_it_refuses_a_malformed_boolean(name):
    result = _start(**{name: "flase"})
    assert result.returncode != 0
    assert f"{name}='flase' is not a boolean" in result.stderr


def test_it_refuses_production_without_a_secret_key():
    result = _start(DJANGO_DEBUG="false")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_it_starts_in_production_with_a_secret_key():
    result = _start(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="x" * 50)
    assert result.returncode == 0, result.stderr


def test_it_refuses_a_malformed_integer():
    result = _start(AGENCY_CYCLE_INTERVAL_SECONDS="soon")
    assert result.returncode != 0
    assert "AGENCY_CYCLE_INTERVAL_SECONDS must be an integer" in result.stderr


def test_it_refuses_a_notification_claim_shorter_than_a_send_can_take():
    result = _start(NOTIFY_CLAIM_SECONDS="60", NOTIFY_HTTP_TIMEOUT_SECONDS="10")
    assert result.returncode != 0
    assert "NOTIFY_CLAIM_SECONDS must be at least 20 times" in result.stderr


def test_it_refuses_public_hosts_while_debug_is_only_defaulted():
    result = _start(DJANGO_ALLOWED_HOSTS="agency.example.com")
    assert result.returncode != 0
    assert "set DJANGO_DEBUG explicitly" in result.stderr


def test_it_warns_at_deploy_check_about_a_per_process_cache():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env={**_start_env(), "DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "x" * 60},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "agency.W001" in result.stderr + result.stdout
