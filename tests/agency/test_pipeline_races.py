"""The pipeline's exactly-once rules under real concurrency: threads with their own connections on
a database server, and real Celery workers on Redis (docs/agents.md)."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from agency.models import Attempt, Deliverable, ModelCall, Task
from agency.pipeline import task_claim, task_work_run
from tests.agency.fake_openai import ok
from tests.agency.gateway_setup import deployment_at, route_of
from tests.agency.pipeline_setup import paid_task
from tests.concurrency import run_at_once
from tests.conftest import database_url
from tests.processes import ROOT, stop, wait_for, worker_start


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_workers")
def test_eight_workers_asking_for_one_paid_task_work_it_once():
    task = paid_task()
    results = run_at_once(8, lambda i: task_work_run(task_id=task.pk, worker=f"w{i}"))
    assert Counter(results) == {"completed": 1, "not claimed": 7}
    assert Deliverable.objects.filter(task=task).count() == 2
    assert Attempt.objects.filter(task=task).count() == 1
    assert task.events.filter(to_status="completed").count() == 1


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_workers")
def test_eight_workers_taking_over_one_dropped_task_make_one_owner():
    task = task_claim(task_id=paid_task().pk, worker="dead")
    Task.objects.filter(pk=task.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    claims = run_at_once(8, lambda i: task_claim(task_id=task.pk, worker=f"w{i}"))
    winners = [t.lease_owner for t in claims if t is not None]
    assert len(winners) == 1
    assert Task.objects.get(pk=task.pk).lease_owner == winners[0]


# --- real workers --------------------------------------------------------------------------------


def _env(broker_url: str, media_root, **extra: str) -> dict:
    """Workers on the test database and broker, reading inputs where this test stored them."""
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": broker_url,
        "PRIVATE_MEDIA_ROOT": str(media_root / "private"),
        **extra,
    }


def _send(env: dict, task_id: int, times: int = 1) -> None:
    """Publish `agency.task_work` for the task to the real broker, from a process of its own."""
    code = (
        "import django; django.setup()\n"
        "from agency.tasks import task_work\n"
        f"for _ in range({times}): task_work.delay({task_id})\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "agency.settings"},
                   check=True, timeout=60)  # fmt: skip


@pytest.fixture
def llm_route(fake_openai, fast_gateway):
    from agency.models import AgentProfile

    deployment = deployment_at(fake_openai.url)
    AgentProfile.objects.create(name="llm", kind="llm", route=route_of(deployment), priority=1)
    return fake_openai


PLAN = '{"steps": [{"op": "value_counts", "args": {"column": "region"}, "title": "Regions"}], "narrative_focus": ""}'
VERDICT = '{"approved": true, "score": 5, "issues": []}'


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_workers")
def test_two_workers_and_a_redelivered_message_complete_a_task_once(broker_url, llm_route, media_root):
    llm_route.default = ok("Fine.")  # the narrative; plan and verdict are scripted
    llm_route.then(ok(PLAN), ok("Regions counted."), ok(VERDICT))
    task = paid_task()
    env = _env(broker_url, media_root)
    workers = [worker_start(env, "-n", f"w{i}@%h") for i in range(2)]
    try:
        _send(env, task.pk, times=3)  # the hand-over, a duplicate and a redelivery
        wait_for(lambda: Task.objects.filter(pk=task.pk, status="completed").exists(), timeout=90, what="completion")
        time.sleep(2)  # let the other messages arrive and find nothing to claim
    finally:
        stop(*workers)
    assert Deliverable.objects.filter(task=task).count() == 1 + 0  # report.html (value counts draw no chart)
    assert Attempt.objects.filter(task=task).count() == 1
    assert list(ModelCall.objects.filter(task=task).values_list("purpose", flat=True).order_by("pk")) == [
        "plan", "work", "review"]  # fmt: skip
    assert len(llm_route.requests) == 3


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_workers")
def test_a_worker_killed_mid_task_leaves_it_to_another_that_finishes_it_once(broker_url, llm_route, media_root):
    llm_route.then(ok(PLAN, delay=30))  # the first worker is mid-task when it dies
    llm_route.then(ok(PLAN), ok("Regions counted."), ok(VERDICT))
    task = paid_task()
    env = _env(broker_url, media_root, TASK_LEASE_SECONDS="3")
    doomed = worker_start(env, "-n", "doomed@%h", "--pool=solo")
    try:
        _send(env, task.pk)
        wait_for(lambda: len(llm_route.requests) >= 1, timeout=60, what="the first worker's plan request")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        stop(doomed)
    assert Task.objects.get(pk=task.pk).status == "processing"
    survivor = worker_start(env, "-n", "survivor@%h")
    try:
        time.sleep(3.5)  # the dead worker's lease runs out
        subprocess.run([sys.executable, "manage.py", "run_agency", "--step", "tasks_requeue"], cwd=ROOT, env=env,
                       check=True, timeout=60, stdout=subprocess.DEVNULL)  # fmt: skip
        wait_for(lambda: Task.objects.filter(pk=task.pk, status="completed").exists(), timeout=90, what="completion")
    finally:
        stop(survivor)
    attempts = list(Attempt.objects.filter(task=task).order_by("pk").values_list("outcome", flat=True))
    assert attempts == ["abandoned", "approved"]
    assert Deliverable.objects.filter(task=task).count() == 1
    assert task.events.filter(to_status="completed").count() == 1
