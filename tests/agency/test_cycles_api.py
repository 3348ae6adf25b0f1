"""Agency cycles through the API (docs/api.md): queued runs, their results, and a broker outage."""

import subprocess
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from agency.cycle import cycles_stuck_fail
from agency.models import ApiKey, CycleRun, IdempotencyRecord
from tests.processes import broker_down_env, broker_start, json_lines, stop, wait_for, web_answers, web_start

URL = "/api/v1/cycles"


@pytest.mark.django_db
def test_it_queues_a_cycle_and_shows_its_steps_as_json(operator_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # eager: the cycle runs once the request commits
        response = operator_client.post(URL)
    assert response.status_code == 202
    queued = response.json()
    assert (queued["status"], queued["trigger"], queued["steps"]) == ("queued", "worker", [])
    assert queued["planned"] == [
        "marketplaces_scan", "bids_reconcile_all", "tasks_requeue", "competitions_resume", "notifications_relay",
        "client_emails_relay", "housekeeping",
    ]  # fmt: skip

    shown = operator_client.get(f"{URL}/{queued['id']}").json()
    assert shown["status"] == "finished" and shown["finished_at"]
    assert [step["name"] for step in shown["steps"]] == queued["planned"]
    assert shown["steps"][3]["ok"] is True and isinstance(shown["steps"][3]["summary"], dict)
    assert shown["trace_id"] == queued["trace_id"] and len(shown["trace_id"]) == 32


@pytest.mark.django_db
def test_it_answers_404_for_an_unknown_or_malformed_cycle_id(operator_client, read_client):
    run = CycleRun.objects.create(trigger="command")
    assert operator_client.get(f"{URL}/{run.pk}").status_code == 200
    assert read_client.get(f"{URL}/{run.pk}").status_code == 403  # a failed step's error may name hosts
    for path in [f"{URL}/{run.pk + 1}", f"{URL}/not-a-number"]:
        response = operator_client.get(path)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"


@pytest.mark.django_db
def test_housekeeping_closes_runs_that_never_ended_and_only_those(settings):
    settings.CYCLE_RUN_TIMEOUT_SECONDS = 3600
    now = timezone.now()
    stuck = [CycleRun.objects.create(trigger="worker", status=status) for status in ("queued", "running")]
    young = CycleRun.objects.create(trigger="worker", status="running")
    done = CycleRun.objects.create(trigger="command", status="finished", finished_at=now)
    CycleRun.objects.exclude(pk=young.pk).update(created_at=now - timedelta(seconds=3601))
    assert cycles_stuck_fail(now=now) == 2
    statuses = dict(CycleRun.objects.values_list("pk", "status"))
    assert statuses == {stuck[0].pk: "failed", stuck[1].pk: "failed", young.pk: "running", done.pk: "finished"}


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_cycle_asked_for_while_the_broker_is_down_is_refused_and_never_replayed_as_accepted(issue_key):
    env, broker_port = broker_down_env()
    headers = {"Authorization": f"Bearer {issue_key(ApiKey.Scope.OPERATOR)}", "Idempotency-Key": "nightly-1"}
    processes, lines = [], []
    try:
        web, url = web_start(env, stderr=subprocess.PIPE)
        processes.append(web)
        json_lines(web.stderr, lines)
        wait_for(lambda: web_answers(url), timeout=30, what="the web process")

        for _ in range(2):  # the retry is refused too: no stored "202 accepted" is replayed
            refused = httpx.post(f"{url}{URL}", headers=headers, timeout=30)
            assert refused.status_code == 503, refused.text
            assert refused.headers["Retry-After"] and refused.json()["code"] == "unavailable"
            assert "Idempotent-Replayed" not in refused.headers
        assert not CycleRun.objects.exists()
        assert not IdempotencyRecord.objects.exists()

        processes.append(broker_start(broker_port))
        accepted = wait_for(
            lambda: (r := httpx.post(f"{url}{URL}", headers=headers, timeout=30)).status_code == 202 and r,
            timeout=30,
            what="an answer once the broker is back",
        )
        assert "Idempotent-Replayed" not in accepted.headers
        assert CycleRun.objects.get().status == "queued"  # handed over; no worker runs in this test
    finally:
        stop(*reversed(processes))
