"""The circuit breaker of each deployment: one `BreakerState` row shared by every process.

Every change is a compare-and-set UPDATE on the status the caller saw, with a row-count check,
like `task_transition`: of many processes asking at once, exactly one moves the breaker, and it
writes the `BreakerEvent` in the same transaction. Nothing here relies on row locks.

    closed ──N consecutive failures──▶ open ──cool-down passed, one caller claims──▶ half_open
       ▲                                 ▲                                              │
       └──────────── trial succeeds ─────┼──────────────────────────────────────────────┤
                                         └──────────────── trial fails ─────────────────┘

A half-open trial whose caller died never reports: after another cool-down the trial is presumed
lost and the next caller may claim a new one.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agency.models import BreakerEvent, BreakerState, ModelDeployment

logger = structlog.get_logger(__name__)

B = BreakerState.Status


@dataclass(frozen=True)
class Admission:
    allowed: bool
    trial: bool = False  # this caller holds the one half-open trial: no retries on it


ADMITTED = Admission(allowed=True)
REFUSED = Admission(allowed=False)


def _cooldown() -> timedelta:
    return timedelta(seconds=settings.GATEWAY_BREAKER_COOLDOWN_SECONDS)


def breaker_state(*, deployment: ModelDeployment) -> BreakerState:
    """The deployment's breaker row, created closed on first use (the primary key makes it one)."""
    state, _ = BreakerState.objects.get_or_create(deployment=deployment)
    return state


def breaker_states(*, deployments: list[ModelDeployment]) -> dict[int, BreakerState]:
    """The breakers of `deployments` by deployment id, read now; missing rows are created closed.
    Raw SQL: this runs on every model call, and compiling the ORM query costs more than running it."""
    ids = [d.pk for d in deployments]
    table = BreakerState._meta.db_table
    sql = f"SELECT * FROM {table} WHERE deployment_id IN ({', '.join(['%s'] * len(ids))})"  # noqa: S608
    states = {state.pk: state for state in BreakerState.objects.raw(sql, ids)}
    for deployment in deployments:
        if deployment.pk not in states:
            states[deployment.pk] = breaker_state(deployment=deployment)
    return states


def breaker_admit(
    *, deployment: ModelDeployment, state: BreakerState | None = None, now: datetime | None = None
) -> Admission:
    """May a request go to `deployment` now? Closed: yes. Open within its cool-down, or half-open
    with a live trial: no. Otherwise the caller tries to claim the trial; only one caller wins."""
    state = state if state is not None else breaker_state(deployment=deployment)
    if state.status == B.CLOSED:
        return ADMITTED
    now = now or timezone.now()
    if state.changed_at is not None and now - state.changed_at < _cooldown():
        return REFUSED
    with transaction.atomic():
        # The status *and* the time seen: a trial claimed (or a breaker re-opened) since we read
        # the row has a new `changed_at`, so our UPDATE matches nothing.
        claimed = BreakerState.objects.filter(
            pk=deployment.pk, status=state.status, changed_at=state.changed_at
        ).update(status=B.HALF_OPEN, changed_at=now)
        if not claimed:
            return REFUSED
        _event(deployment, state.status, B.HALF_OPEN, "cool-down over: one trial call")
    logger.info("breaker_half_open", deployment_id=deployment.pk)
    return Admission(allowed=True, trial=True)


def breaker_succeeded(*, deployment: ModelDeployment, state: BreakerState) -> None:
    """A call went through: the failure count restarts; a half-open breaker closes."""
    if state.status == B.CLOSED and state.failures == 0:
        return  # the common case costs no write
    with transaction.atomic():
        closed = BreakerState.objects.filter(pk=deployment.pk, status__in=[B.HALF_OPEN, B.CLOSED]).update(
            status=B.CLOSED, failures=0, changed_at=None
        )
        if closed and state.status == B.HALF_OPEN:
            _event(deployment, B.HALF_OPEN, B.CLOSED, "trial call succeeded")
    if state.status == B.HALF_OPEN:
        logger.info("breaker_closed", deployment_id=deployment.pk)
    state.status, state.failures, state.changed_at = B.CLOSED, 0, None


def breaker_failed(*, deployment: ModelDeployment, state: BreakerState, now: datetime | None = None) -> None:
    """A call failed: count it; the threshold-th consecutive failure opens the breaker, a failed
    trial re-opens it for another cool-down."""
    now = now or timezone.now()
    threshold = settings.GATEWAY_BREAKER_FAILURES
    with transaction.atomic():
        if state.status == B.HALF_OPEN:
            opened = BreakerState.objects.filter(pk=deployment.pk, status=B.HALF_OPEN).update(
                status=B.OPEN, changed_at=now, failures=F("failures") + 1
            )
            reason = "trial call failed"
        else:
            # Increment, then open by compare-and-set: concurrent failures all count, one opens it.
            BreakerState.objects.filter(pk=deployment.pk, status=B.CLOSED).update(failures=F("failures") + 1)
            opened = BreakerState.objects.filter(pk=deployment.pk, status=B.CLOSED, failures__gte=threshold).update(
                status=B.OPEN, changed_at=now
            )
            reason = f"{threshold} consecutive failures"
        if opened:
            _event(deployment, state.status, B.OPEN, reason)
    if opened:
        logger.warning("breaker_opened", deployment_id=deployment.pk, reason=reason)
    state.refresh_from_db()


def breaker_reset(*, deployment: ModelDeployment, actor: str) -> bool:
    """Close the breaker by hand (the admin's "Reset breaker"). A compare-and-set on the status
    seen, like every other change; returns False when it was already closed with no failures."""
    state = breaker_state(deployment=deployment)
    if state.status == B.CLOSED and state.failures == 0:
        return False
    with transaction.atomic():
        if not BreakerState.objects.filter(pk=deployment.pk, status=state.status, changed_at=state.changed_at).update(
            status=B.CLOSED, failures=0, changed_at=None
        ):
            return False
        if state.status != B.CLOSED:
            _event(deployment, state.status, B.CLOSED, "reset by hand", actor=actor)
    logger.info("breaker_reset", deployment_id=deployment.pk, actor=actor)
    return True


def _event(deployment: ModelDeployment, from_status: str, to_status: str, reason: str, actor: str = "gateway"):
    BreakerEvent.objects.create(
        deployment_id=deployment.pk, from_status=from_status, to_status=to_status, actor=actor, reason=reason
    )
