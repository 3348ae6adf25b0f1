"""Celery entry points of the agency core: thin adapters over services."""

import structlog
from celery import chain, shared_task

from agency.cycle import CYCLE_STEPS, cycle_start, cycle_step_record, step_run
from agency.models import CycleRun

logger = structlog.get_logger(__name__)


@shared_task(name="agency.cycle", bind=True, max_retries=10)
def agency_cycle(self, run_id: int | None = None) -> list[str]:
    """Run a cycle on the workers: each step is its own task, chained in order.

    Beat starts one with no row; the API queues its row first (`cycle_request`)
    and passes its id, and this task may see it before that request commits:
    then it tries again a second later. The chain is published from inside this
    task, so every step task carries this task's trace context (and thereby the
    trace of whoever started it).
    """
    if run_id is None:
        run = cycle_start(steps=CYCLE_STEPS, trigger=CycleRun.Trigger.WORKER)
    elif not CycleRun.objects.filter(pk=run_id, status=CycleRun.Status.QUEUED).update(status=CycleRun.Status.RUNNING):
        if not CycleRun.objects.filter(pk=run_id).exists():
            raise self.retry(countdown=1)  # the request that queued it has not committed yet
        logger.warning("cycle_already_started", cycle_run_id=run_id)  # a redelivered message
        return []
    else:
        run = CycleRun(pk=run_id)
    last = len(CYCLE_STEPS) - 1
    chain(*(cycle_step.si(path, run.pk, i == last) for i, path in enumerate(CYCLE_STEPS))).apply_async()
    logger.info("cycle_enqueued", steps=len(CYCLE_STEPS), cycle_run_id=run.pk)
    return list(CYCLE_STEPS)


@shared_task(name="agency.cycle_step")
def cycle_step(path: str, run_id: int | None = None, last: bool = False) -> dict:
    if path not in CYCLE_STEPS:
        raise ValueError(f"{path!r} is not a cycle step")
    outcome = step_run(path)
    if run_id is not None:
        cycle_step_record(run_id=run_id, outcome=outcome, last=last)
    return {"step": outcome.name, "ok": outcome.ok, "summary": outcome.summary, "error": outcome.error}


@shared_task(name="agency.task_work")
def task_work(task_id: int) -> str:
    """Work a paid task to its end (docs/agents.md). Enqueued after the payment commits, and again
    by the cycle for tasks that waited too long; a duplicate or redelivered message finds nothing
    to claim. Acknowledged late: a worker that dies mid-task leaves its message to another."""
    from agency.pipeline import task_work_run

    return task_work_run(task_id=task_id)


@shared_task(name="agency.client_emails_relay", ignore_result=True)
def client_emails_relay() -> dict:
    """Beat runs this every `NOTIFY_RELAY_INTERVAL_SECONDS`; commits kick it too. Safe to overlap."""
    from agency.services import delivery

    return delivery.client_emails_relay()
