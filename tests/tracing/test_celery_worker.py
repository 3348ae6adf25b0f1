"""A real Celery worker on the Redis broker keeps the request's trace (docs/tracing.md).

Runs on the PostgreSQL pass: the worker is another process and must see the
test database, which an in-memory SQLite database cannot offer.
"""

import json
import os
import subprocess
import uuid

import pytest
from django_celery_results.models import TaskResult

from agency.models import ApiKey, CycleRun
from tests.conftest import database_url
from tests.processes import json_lines, stop, wait_for, web_answers, web_start, worker_start
from tests.tracing.http_server import plain_post

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def deployment(broker_url):
    """The production shape in miniature: a gunicorn web process and a Celery
    worker (prefork pool, as in production), sharing the test database and
    the Redis broker.

    Yields the web URL and the worker's log lines (JSON) as they arrive.
    """
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": broker_url,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    web, url = web_start(env)
    worker = worker_start(env, "-l", "INFO", stderr=subprocess.PIPE)
    lines: list[dict] = []
    reader = json_lines(worker.stderr, lines)
    try:
        wait_for(lambda: web_answers(url), timeout=30)
        yield url, lines
    finally:
        stop(web, worker)
        reader.join(timeout=10)


def test_it_logs_a_task_enqueued_by_a_request_with_the_requests_trace_id(deployment, issue_key):
    url, worker = deployment
    trace_id = uuid.uuid4().hex
    status, headers, body = plain_post(
        f"{url}/api/v1/cycles",
        headers={
            "Authorization": f"Bearer {issue_key(ApiKey.Scope.OPERATOR)}",
            "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01",
        },
    )
    assert status == 202, body
    run_id = json.loads(body)["id"]

    cycle = wait_for(lambda: TaskResult.objects.filter(task_name="agency.cycle", status="SUCCESS").first())
    cycle_id = cycle.task_id
    run = wait_for(lambda: CycleRun.objects.filter(pk=run_id, status="finished").first())
    assert run.trace_id == trace_id and [s["name"] for s in run.steps] == run.planned
    step = wait_for(lambda: TaskResult.objects.filter(task_name="agency.cycle_step", status="SUCCESS").first())
    assert cycle.task_name == "agency.cycle"  # result_extended stores the name
    assert json.loads(step.result)["ok"] is True

    wait_for(lambda: any(line.get("task_id") == step.task_id and line["event"] == "task_succeeded" for line in worker))
    ours = [line for line in worker if line.get("task_id") in {cycle_id, step.task_id}]
    events = {(line["task_id"], line["event"]) for line in ours}
    assert {(cycle_id, "task_started"), (cycle_id, "cycle_enqueued"), (step.task_id, "cycle_step_finished")} <= events
    stray = [(line["event"][:60], line.get("trace_id")) for line in ours if line.get("trace_id") != trace_id]
    assert not stray
    # The request's id travels too (django-structlog), through both hops.
    assert {line.get("request_id") for line in ours} == {headers["X-Request-ID"]}
    # Between tasks the worker's own lines name no task: no stale context.
    [received] = [
        line for line in worker if line["event"].startswith(f"Task agency.cycle_step[{step.task_id}] received")
    ]
    assert "task_id" not in received and "trace_id" not in received
