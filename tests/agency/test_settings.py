"""Settings fail loudly on bad configuration (checked in a fresh interpreter)."""

import json
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


PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "tests-only-7f3a9c1e5b2d8f4a6c0e9b7d3f1a5c8e2b4d6f0a9c7e",
    "DJANGO_ALLOWED_HOSTS": "agency.example",
}


def _deploy_check(**env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env={**_start_env(), **PRODUCTION, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_deploy_check_passes_in_production_with_only_the_required_variables():
    result = _deploy_check(CACHE_URL="redis://127.0.0.1:6379/9")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout + result.stderr


def test_the_deploy_check_fails_when_https_protections_are_switched_off():
    result = _deploy_check(
        CACHE_URL="redis://127.0.0.1:6379/9", DJANGO_SECURE_SSL_REDIRECT="false", DJANGO_SECURE_HSTS_SECONDS="0"
    )
    assert result.returncode != 0
    assert "security.W008" in result.stderr and "security.W004" in result.stderr


_ONE_GET = """
import json, sys
import django
django.setup()
from django.test import Client
path, headers = sys.argv[1], json.loads(sys.argv[2])
r = Client().get(path, HTTP_HOST="agency.example", **headers)
print(r.status_code, r.headers.get("Location", ""), r.headers.get("Strict-Transport-Security", ""))
"""


def _production_answer(path: str, headers: dict | None = None, **env) -> str:
    """A GET in a fresh production-configured process: "status location hsts"."""
    result = subprocess.run(
        [sys.executable, "-c", _ONE_GET, path, json.dumps(headers or {})],
        cwd=ROOT, env={**_start_env(), **PRODUCTION, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_production_redirects_plain_http_to_https_but_lets_health_probes_through():
    assert _production_answer("/api/v1/quote") == "301 https://agency.example/api/v1/quote"
    assert _production_answer("/healthz").split()[0] in ("200", "503")  # answered, whatever its health


def test_production_trusts_the_proxys_scheme_header_and_sends_hsts():
    status, *rest = _production_answer("/api/v1/quote", {"HTTP_X_FORWARDED_PROTO": "https"}).split(" ")
    assert status == "401"  # served, not redirected: the proxy said https
    assert "max-age=31536000; includeSubDomains; preload" in " ".join(rest)


def test_a_plain_http_server_can_switch_the_redirect_off():
    assert _production_answer("/api/v1/quote", DJANGO_SECURE_SSL_REDIRECT="false").split() == ["401"]


def test_it_refuses_a_malformed_proxy_header_setting():
    result = _start(**PRODUCTION, DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto")
    assert result.returncode != 0
    assert "DJANGO_SECURE_PROXY_SSL_HEADER" in result.stderr


def _cache_settings(**env) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", "import django, json; django.setup(); from django.conf import settings; "
         "print(json.dumps(settings.CACHES['default']))"],
        cwd=ROOT, env={**_start_env(), **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_it_bounds_every_redis_cache_call_with_socket_timeouts():
    cache = _cache_settings(CACHE_URL="redis://127.0.0.1:6379/1")
    assert cache["OPTIONS"] == {"socket_connect_timeout": 0.25, "socket_timeout": 0.5}
    tuned = _cache_settings(CACHE_URL="redis://127.0.0.1:6379/1?socket_timeout=2", CACHE_CONNECT_TIMEOUT_SECONDS="0.1")
    assert tuned["OPTIONS"] == {"socket_connect_timeout": 0.1, "socket_timeout": 2}  # the URL's own option wins
    assert "OPTIONS" not in _cache_settings()  # the in-process default cache takes no socket options


def test_it_refuses_a_cache_timeout_of_zero():
    result = _start(CACHE_URL="redis://127.0.0.1:6379/1", CACHE_TIMEOUT_SECONDS="0")
    assert result.returncode != 0
    assert "CACHE_CONNECT_TIMEOUT_SECONDS and CACHE_TIMEOUT_SECONDS must be positive" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GATEWAY_TIMEOUT_SECONDS": "0"}, "GATEWAY_TIMEOUT_SECONDS must be positive"),
        ({"GATEWAY_BACKOFF_SECONDS": "-1"}, "GATEWAY_TIMEOUT_SECONDS must be positive"),
        ({"GATEWAY_BREAKER_FAILURES": "0"}, "GATEWAY_BREAKER_FAILURES"),
        ({"AGENCY_MODEL_BASE_URL": "http://127.0.0.1:11434/v1"}, "AGENCY_MODEL_NAME must name the model"),
        ({"AGENCY_MODEL_KIND": "edge"}, "AGENCY_MODEL_KIND must be 'local' or 'cloud'"),
        ({"AGENCY_MODEL_PRICE_IN_CENTS_PER_1M": "2.5$"}, "AGENCY_MODEL_PRICE_IN_CENTS_PER_1M must be a decimal"),
        ({"AGENCY_MODEL_PRICE_OUT_CENTS_PER_1M": "-3"}, "AGENCY_MODEL_PRICE_OUT_CENTS_PER_1M must be a decimal"),
    ],
)
def test_it_refuses_a_bad_model_gateway_setting(env, message):
    result = _start(**env)
    assert result.returncode != 0
    assert message in result.stderr


def test_it_starts_with_a_model_configured_from_the_environment():
    result = _start(
        AGENCY_MODEL_BASE_URL="http://127.0.0.1:11434/v1",
        AGENCY_MODEL_NAME="llama3.2",
        AGENCY_MODEL_KIND="local",
        AGENCY_MODEL_PRICE_IN_CENTS_PER_1M="0.5",
        AGENCY_MODEL_PRICE_OUT_CENTS_PER_1M="1",
    )
    assert result.returncode == 0, result.stderr
