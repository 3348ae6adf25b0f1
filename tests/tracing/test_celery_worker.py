"""A real Celery worker on the Redis broker keeps the request's trace (SPEC §3).

Runs on the PostgreSQL pass: the worker is another process and must see the
test database, which an in-memory SQLite database cannot offer.
"""

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.db import connection
from django_celery_results.models import TaskResult

from agency.celery import app as celery_app
from agency.models import ApiKey
from tests.conftest import client_with_key, in_ci

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker_url():
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if in_ci():
            pytest.fail(f"Redis is required in CI and is not reachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    return REDIS_URL


def _database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER'] or ''}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def worker(broker_url):
    """A worker process on its own queue; yields its log lines (JSON) as they come."""
    queue = f"agency-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": broker_url,
        "CELERY_QUEUE": queue,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "agency", "worker", "--pool=solo", "-Q", queue,
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[dict] = []

    def read():
        for raw in process.stderr:
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    saved = {k: celery_app.conf[k] for k in ("broker_url", "task_always_eager", "task_default_queue")}
    celery_app.conf.update(broker_url=broker_url, task_always_eager=False, task_default_queue=queue)
    try:
        yield lines
    finally:
        celery_app.conf.update(saved)
        celery_app.pool.force_close_all()
        process.terminate()
        process.wait(timeout=30)
        reader.join(timeout=10)


def _wait_for(query, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = query()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the worker")


def test_a_task_enqueued_by_a_request_logs_with_the_requests_trace_id(worker, issue_key):
    trace_id = uuid.uuid4().hex
    client = client_with_key(issue_key(ApiKey.Scope.OPERATOR))
    response = client.post("/api/v1/cycles", HTTP_TRACEPARENT=f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01")
    assert response.status_code == 202
    cycle_id = response.json()["task_id"]

    cycle = _wait_for(lambda: TaskResult.objects.filter(task_id=cycle_id, status="SUCCESS").first())
    step = _wait_for(lambda: TaskResult.objects.filter(task_name="agency.cycle_step", status="SUCCESS").first())
    assert cycle.task_name == "agency.cycle"  # result_extended stores the name
    assert json.loads(step.result)["ok"] is True

    _wait_for(lambda: any(line.get("task_id") == step.task_id and line["event"] == "task_succeeded" for line in worker))
    ours = [line for line in worker if line.get("task_id") in {cycle_id, step.task_id}]
    events = {(line["task_id"], line["event"]) for line in ours}
    assert {(cycle_id, "task_started"), (cycle_id, "cycle_enqueued"), (step.task_id, "cycle_step_finished")} <= events
    stray = [(line["event"][:60], line.get("trace_id")) for line in ours if line.get("trace_id") != trace_id]
    assert not stray
    # The request's id travels too (django-structlog), through both hops.
    assert {line.get("request_id") for line in ours} == {response.headers["X-Request-ID"]}
    # Between tasks the worker's own lines name no task: no stale context.
    [received] = [
        line for line in worker if line["event"].startswith(f"Task agency.cycle_step[{step.task_id}] received")
    ]
    assert "task_id" not in received and "trace_id" not in received
