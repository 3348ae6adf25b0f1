"""Celery entry points of the agency core: thin adapters over services."""

import structlog
from celery import chain, shared_task

from agency.cycle import CYCLE_STEPS, step_run

logger = structlog.get_logger(__name__)


@shared_task(name="agency.cycle")
def agency_cycle() -> list[str]:
    """Run a cycle on the workers: each step is its own task, chained in order.

    The chain is published from inside this task, so every step task carries
    this task's trace context (and thereby the trace of whoever started it).
    """
    chain(*(cycle_step.si(path) for path in CYCLE_STEPS)).apply_async()
    logger.info("cycle_enqueued", steps=len(CYCLE_STEPS))
    return list(CYCLE_STEPS)


@shared_task(name="agency.cycle_step")
def cycle_step(path: str) -> dict:
    if path not in CYCLE_STEPS:
        raise ValueError(f"{path!r} is not a cycle step")
    outcome = step_run(path)
    return {"step": outcome.name, "ok": outcome.ok, "summary": outcome.summary, "error": outcome.error}
