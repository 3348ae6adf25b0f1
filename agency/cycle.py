"""One agency cycle: the ordered steps that `run_agency`, `demo` and beat run.

Each step is a function that does one stage of the agency's work, is safe to
run concurrently and twice, and returns a small summary for operators. Issues
that add a stage put its dotted path into `CYCLE_STEPS` at its place in the
order: scan marketplaces → evaluate and bid → reconcile bids → work paid
tasks → arena → escalate → relay notifications → housekeeping.

Every run is a `CycleRun` row, stamped with the run's trace and filled in
step by step, so operators see what each run did (and how far a dead one got).
"""

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from opentelemetry import trace

from agency.models import CycleRun, IdempotencyRecord
from agency.services.payments import checkout_abandoned_cancel

logger = structlog.get_logger(__name__)

CYCLE_STEPS: list[str] = [
    "bids.services.postings.marketplaces_scan",
    "bids.services.bids.bids_reconcile_all",
    "agency.pipeline.tasks_requeue",
    "arena.services.competitions.competitions_resume",
    "escalations.services.notifications_relay",
    "agency.services.delivery.client_emails_relay",
    "agency.cycle.housekeeping",
]


@dataclass
class StepOutcome:
    name: str
    ok: bool
    duration_ms: int
    summary: dict = field(default_factory=dict)
    error: str = ""


def step_name(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def step_run(path: str) -> StepOutcome:
    """Run one step under its own span; an error is reported, not raised."""
    name = step_name(path)
    started = time.monotonic()
    with trace.get_tracer("agency").start_as_current_span(f"cycle {name}"):
        try:
            summary = import_string(path)() or {}
        except Exception as exc:
            logger.exception("cycle_step_failed", step=name)
            return StepOutcome(name, False, _ms_since(started), error=f"{type(exc).__name__}: {exc}")
        outcome = StepOutcome(name, True, _ms_since(started), summary=summary)
        logger.info("cycle_step_finished", step=name, duration_ms=outcome.duration_ms, **summary)
        return outcome


def cycle_start(*, steps: list[str], trigger: str) -> CycleRun:
    """The row of a run that is about to do `steps` (dotted paths), in the current trace."""
    return CycleRun.objects.create(trigger=trigger, planned=[step_name(path) for path in steps])


def cycle_request() -> CycleRun:
    """Queue a cycle on the workers now; returns its row (status `queued`).

    The task is published before the caller's transaction commits, so a broker
    that cannot take it makes the whole request fail (the API answers 503 and
    keeps nothing, not even an `Idempotency-Key` answer claiming it was
    accepted). The worker waits for the row if it is faster than the commit.
    In eager mode (no broker) the cycle runs after the commit instead, outside
    the caller's transaction.
    """
    from agency.tasks import agency_cycle

    run = CycleRun.objects.create(
        trigger=CycleRun.Trigger.WORKER,
        status=CycleRun.Status.QUEUED,
        planned=[step_name(path) for path in CYCLE_STEPS],
    )
    if settings.CELERY_TASK_ALWAYS_EAGER:
        transaction.on_commit(lambda: agency_cycle.delay(run.pk))
    else:
        agency_cycle.apply_async(args=[run.pk], retry=False)
    return run


def cycle_step_record(*, run_id: int, outcome: StepOutcome, last: bool) -> None:
    """Add a finished step to its run; the last one closes the run (failed if any step failed)."""
    with transaction.atomic():
        run = CycleRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:  # deleted meanwhile (housekeeping, an operator): nothing to record into
            return
        run.steps = [*run.steps, asdict(outcome)]
        fields = ["steps"]
        if last:
            ok = all(step["ok"] for step in run.steps)
            run.status = CycleRun.Status.FINISHED if ok else CycleRun.Status.FAILED
            run.finished_at = timezone.now()
            fields += ["status", "finished_at"]
        run.save(update_fields=fields)


def cycle_run(
    *, steps: list[str] | None = None, on_step: Callable[[StepOutcome], None] | None = None
) -> tuple[CycleRun, list[StepOutcome]]:
    """Run every step in order in this process; later steps run even if one fails."""
    paths = list(steps if steps is not None else CYCLE_STEPS)
    run = cycle_start(steps=paths, trigger=CycleRun.Trigger.COMMAND)
    outcomes = []
    for index, path in enumerate(paths):
        outcome = step_run(path)
        outcomes.append(outcome)
        cycle_step_record(run_id=run.pk, outcome=outcome, last=index == len(paths) - 1)
        if on_step is not None:
            on_step(outcome)
    run.refresh_from_db()
    return run, outcomes


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def housekeeping() -> dict:
    """Forget stored Idempotency-Key answers older than their replay window; cancel card-paid tasks
    whose checkout was never opened (their creating process died); close cycle runs that never ended."""
    cutoff = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return {
        "idempotency_records_purged": deleted,
        "abandoned_checkouts_cancelled": checkout_abandoned_cancel(),
        "stuck_cycles_failed": cycles_stuck_fail(),
    }


def cycles_stuck_fail(*, now=None) -> int:
    """Close runs still queued or running after `CYCLE_RUN_TIMEOUT_SECONDS` (a worker died mid-chain,
    a message was lost): failed, so none shows as in progress for ever. Returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.CYCLE_RUN_TIMEOUT_SECONDS)
    return CycleRun.objects.filter(
        status__in=[CycleRun.Status.QUEUED, CycleRun.Status.RUNNING], created_at__lt=cutoff
    ).update(status=CycleRun.Status.FAILED, finished_at=now)
