from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import CommandError, call_command

from agency.models import ApiKey, Task
from escalations.models import Escalation
from tests.conftest import client_with_key

pytestmark = pytest.mark.django_db


def _run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_it_prints_a_working_api_key_alone_on_the_last_line():
    output = _run("create_api_key", "--name", "ci bot", "--scope", "operator")
    raw = output.strip().splitlines()[-1]
    assert raw.startswith("agy_") and " " not in raw
    api_key = ApiKey.objects.get(name="ci bot")
    assert api_key.scope == "operator"
    assert client_with_key(raw).get("/api/v1/keys").status_code == 200


def test_it_refuses_an_api_key_with_an_unknown_scope():
    with pytest.raises(CommandError):
        call_command("create_api_key", "--name", "x", "--scope", "admin")
    assert not ApiKey.objects.exists()


def test_it_runs_every_cycle_step_and_can_run_twice():
    first = _run("run_agency")
    second = _run("run_agency")
    for output in (first, second):
        assert "[1/2] notifications_relay: ok" in output
        assert "[2/2] housekeeping: ok" in output
        assert "Cycle finished: 2 steps ok." in output


def test_it_refuses_an_unknown_cycle_step():
    with pytest.raises(CommandError, match="Unknown step"):
        call_command("run_agency", "--step", "nope")


def test_it_runs_each_command_under_a_trace_of_its_own(log_lines):
    _run("run_agency")
    _run("run_agency")
    started = [line for line in log_lines() if line.get("event") == "command_started"]
    assert len(started) == 2
    assert started[0]["trace_id"] != started[1]["trace_id"]
    assert all(len(line["trace_id"]) == 32 for line in started)


def test_it_sets_up_the_demo_prints_a_login_and_can_run_twice(settings, tmp_path):
    settings.DEBUG = True  # pytest-django runs tests with DEBUG off; the demo is for development
    settings.MEDIA_ROOT = tmp_path
    first = _run("demo", "--no-serve")
    second = _run("demo", "--no-serve")
    for output in (first, second):
        assert "Login:     operator / " in output
        assert "housekeeping: ok" in output
    user = get_user_model().objects.get(username="operator")
    password = second.split("Login:     operator / ")[1].split()[0]
    assert user.is_staff and user.check_password(password)
    assert get_user_model().objects.count() == 1
    assert ApiKey.objects.filter(name="demo integration").count() == 1
    demo_tasks = Task.objects.filter(client__email="demo-client@agency.local")
    assert demo_tasks.count() == 4  # seeded once, not again on the second run
    assert sorted(demo_tasks.values_list("status", flat=True)) == ["escalated", "paid", "paid", "paid"]
    assert all(t.input_sha256 and t.input_size for t in demo_tasks)
    assert "Tasks:     1 escalated, 3 paid" in second
    # The task no agent can do is escalated once, and the operators' e-mail went out once.
    [escalation] = Escalation.objects.all()
    assert (escalation.reason, escalation.status) == ("no_capable_agent", "open")
    [message] = mail.outbox
    assert message.to == ["operators@agency.local"] and f"Escalation #{escalation.pk}" in message.subject
    assert "Inbox:     1 unresolved escalation(s); notifications: 1 sent" in second
    raw = first.split("API key:   ")[1].split()[0]
    assert client_with_key(raw).get("/api/v1/keys").status_code == 200


def test_it_refuses_the_demo_outside_development(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="for development"):
        call_command("demo", "--no-serve")
