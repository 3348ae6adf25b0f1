from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client, TestCase

from agency.models import ApiKey, Attempt, CycleRun, Task
from agency.money import dollars
from bids.models import Bid
from escalations.models import Escalation
from escalations.services import escalation_resolve
from tests.conftest import client_with_key

pytestmark = pytest.mark.django_db


def _run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _demo(*args) -> str:
    """The demo, with what it queues after its commits (arena sides, bid sends) run as it goes, as
    outside a test's transaction."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return _run("demo", "--no-serve", *args)


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
        assert "[1/7] marketplaces_scan: ok" in output
        assert "[2/7] bids_reconcile_all: ok" in output
        assert "[3/7] tasks_requeue: ok" in output
        assert "[4/7] competitions_resume: ok" in output
        assert "[5/7] notifications_relay: ok" in output
        assert "[6/7] client_emails_relay: ok" in output
        assert "[7/7] housekeeping: ok" in output
        assert "finished: 7 steps ok." in output
    assert [run.status for run in CycleRun.objects.order_by("pk")] == ["finished", "finished"]


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


def test_it_sets_up_the_demo_prints_a_login_and_can_run_twice(settings, tmp_path, monkeypatch):
    settings.DEBUG = True  # pytest-django runs tests with DEBUG off; the demo is for development
    settings.MEDIA_ROOT = tmp_path
    settings.PUBLIC_BASE_URL = "http://unused.example"  # through the fixture: restored after the test
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    first = _demo()
    second = _demo()
    for output in (first, second):
        assert "housekeeping: ok" in output
    user = get_user_model().objects.get(username="operator")
    password = first.split("Login:     operator / ")[1].split()[0]
    assert "Login:     operator (password printed by the first demo run" in second
    assert "changepassword operator" in second
    assert user.is_staff and user.is_superuser and user.check_password(password)  # the second run kept it
    assert get_user_model().objects.count() == 1
    assert ApiKey.objects.filter(name="demo integration").count() == 1
    demo_tasks = Task.objects.filter(client__email="demo-client@agency.local")
    assert demo_tasks.count() == 3  # seeded once, not again on the second run
    assert all(t.input_sha256 and t.input_size for t in demo_tasks)
    # No model configured: the baseline agent reports on both tables and declines the contract.
    assert sorted(demo_tasks.values_list("input_name", "status")) == [
        ("consulting_agreement.txt", "escalated"), ("quarterly_expenses.csv", "completed"),
        ("regional_sales.csv", "completed")]  # fmt: skip
    for task in demo_tasks.filter(status="completed"):
        assert sorted(task.deliverables.values_list("name", flat=True)) == ["chart.png", "report.html"]
        assert f"#{task.pk} {task.title}: completed (" in second
    assert "Tasks:     2 completed, 1 escalated" in second
    revenue = sum(demo_tasks.filter(status="completed").values_list("price_cents", flat=True))
    # No model configured: no model cost; the demo marketplace is in training mode: no fee.
    compute = Decimal(sum(Attempt.objects.values_list("compute_ms", flat=True))) / 1000 * Decimal("0.0014")
    assert (
        f"Money:     revenue {dollars(revenue)}, marketplace fees $0.00, model calls $0.00, "
        f"compute {dollars(compute, 4)}, profit {dollars(revenue - compute, 4)} (last 30 days"
    ) in second
    # The task no agent here can do is escalated once, and the operators' e-mail went out once;
    # the client got one delivery e-mail per completed task.
    [escalation] = Escalation.objects.all()
    assert (escalation.reason, escalation.status) == ("arena_no_winner", "open")  # every demo task competes
    [message] = _operator_mail()
    assert f"Escalation #{escalation.pk}" in message.subject
    assert sorted(m.to[0] for m in mail.outbox if m is not message) == ["demo-client@agency.local"] * 2
    assert "Inbox:     1 unresolved escalation(s); notifications: 1 sent" in second
    # The baseline met the LLM profile (no model here: it declines) on each demo task.
    assert "Arena:     competitions 2 decided, 1 no_winner" in second
    assert "accounting: baseline 1 - 0 llm (ties 0, none passed 0, win rate of baseline 95 % [0.21, 1.00]" in second
    assert "legal: baseline 0 - 0 llm (ties 0, none passed 1; watching)" in second
    # The demo marketplace was scanned by the first run's cycle (the second finds it not due yet).
    # Its bids are simulated once their transaction commits, which a test's transaction never does.
    for output in (first, second):
        assert "Postings:  19 bid, 3 needs_review, 14 skip; bids: 19 " in output
    assert Bid.objects.count() == 19
    raw = first.split("API key:   ")[1].split()[0]
    assert client_with_key(raw).get("/api/v1/keys").status_code == 200


def test_the_trace_id_each_demo_run_prints_finds_that_run_in_the_trace_search(settings, tmp_path, admin_client):
    settings.DEBUG = True
    settings.MEDIA_ROOT = tmp_path
    for _ in range(2):  # the second run seeds nothing new, yet its trace still has a record
        output = _demo()
        trace_id = output.split("Trace:     ")[1].split()[0]
        [run] = CycleRun.objects.filter(trace_id=trace_id)
        assert (run.trigger, run.status) == ("command", "finished")
        assert [step["name"] for step in run.steps] == [
            "marketplaces_scan", "bids_reconcile_all", "tasks_requeue", "competitions_resume", "notifications_relay",
            "client_emails_relay", "housekeeping"]  # fmt: skip
        page = admin_client.get("/admin/traces/", {"trace_id": trace_id}).content.decode()
        assert f"Cycle #{run.pk}" in page
    assert CycleRun.objects.count() == 2


def test_e_mailed_links_point_where_the_demo_serves(
    settings, monkeypatch, media_root, django_capture_on_commit_callbacks
):
    settings.DEBUG = True
    settings.PUBLIC_BASE_URL = "http://unused.example"  # through the fixture: restored after the test
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    output = _demo("--addrport", "0.0.0.0:8123")
    assert "Admin:     http://127.0.0.1:8123/admin/" in output
    [escalation] = Escalation.objects.all()
    [alert] = _operator_mail()
    assert f"http://127.0.0.1:8123/admin/escalations/escalation/{escalation.pk}/change/" in alert.body

    # An operator finishes the escalated task by hand while the demo serves: the client's link follows too.
    upload = SimpleUploadedFile("review.md", b"Clause 7 caps liability.", content_type="text/markdown")
    mail.outbox.clear()  # the deliveries of the tasks the baseline agent completed
    with django_capture_on_commit_callbacks(execute=True):
        escalation_resolve(escalation=escalation, resolution="completed_manually", actor="op", deliverable=upload)
    [delivery] = [m for m in mail.outbox if m.to == ["demo-client@agency.local"]]
    url = next(word for word in delivery.body.split() if word.startswith("http"))
    assert url.startswith("http://127.0.0.1:8123/deliver/")
    assert Client().get(url.removeprefix("http://127.0.0.1:8123")).status_code == 200


def test_it_honours_public_base_url_over_the_served_address(settings, tmp_path, monkeypatch):
    settings.DEBUG = True
    settings.MEDIA_ROOT = tmp_path
    settings.PUBLIC_BASE_URL = "https://agency.example"
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://agency.example")
    output = _demo("--addrport", "127.0.0.1:8123")
    assert "Admin:     https://agency.example/admin/" in output
    [alert] = _operator_mail()
    assert "https://agency.example/admin/escalations/escalation/" in alert.body


def _operator_mail() -> list:
    return [m for m in mail.outbox if m.to == ["operators@agency.local"]]


def test_it_refuses_the_demo_outside_development(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="for development"):
        call_command("demo", "--no-serve")
