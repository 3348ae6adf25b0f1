"""Every state change of an escalation and of its notifications (docs/escalations.md).

Opening, acknowledging, assigning and resolving an escalation are one
transaction each: the escalation row, its timeline event, the task's status
change and the outbox rows that tell operators are kept together or not at
all; the relay (`escalations.outbox`) sends those rows only after commit.
The timers and `notifications_relay`, the one operation that beat, the
agency cycle and `manage.py relay_notifications` run, live here too.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.core.files import File
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from agency.errors import DomainError
from agency.models import Task
from agency.outbox import outbox_relay, relaying
from agency.services.delivery import deliverable_add
from agency.services.tasks import TRANSITIONS, task_flag, task_transition
from agency.tasks import task_work
from escalations.models import Escalation, EscalationEvent, Notification, NotificationChannel
from escalations.outbox import (
    NOTIFICATIONS,
    channels_routed,
    channels_told,
    notifications_enqueue,
    notifications_relay_kick,
)
from tracing.context import current_trace_id

logger = structlog.get_logger(__name__)
R = Escalation.Reason


class EscalationConflict(DomainError):
    code = "escalation_conflict"


@dataclass(frozen=True)
class Decision:
    """What to do with a task whose attempt went wrong: escalate (with a reason), fail, or retry."""

    action: str  # "escalate" | "fail" | "retry"
    reason: str = ""


def failure_decide(
    *, attempts: int, is_high_value: bool, errored: bool, retryable: bool = False, max_attempts: int | None = None
) -> Decision:
    """The escalation rules (docs/escalations.md) for a task whose attempt failed (error) or was rejected (no error).

    Attempts exhausted (`max_attempts`, by default TASK_MAX_ATTEMPTS) → escalate. A high-value
    task with a failed attempt → escalate at once. Otherwise an error fails the task unless it is
    `retryable` (a model that did not answer), and a rejection gets another attempt.
    """
    if attempts >= (max_attempts or settings.TASK_MAX_ATTEMPTS):
        return Decision("escalate", R.ATTEMPTS_EXHAUSTED)
    if is_high_value and errored:
        return Decision("escalate", R.HIGH_VALUE_FAILURE)
    return Decision("fail") if errored and not retryable else Decision("retry")


def escalation_open(
    *, task: Task, reason: str, actor: str, detail: str = "", context: dict | None = None
) -> tuple[Escalation, bool]:
    """Escalate `task` for `reason`; returns (escalation, created).

    A task already escalated for this reason and not yet resolved gets that
    escalation back (created=False), whoever asks and however many ask at once:
    the unique (task, live_key) decides, not a read before the write.
    """
    if reason not in R.values:
        raise ValueError(f"Unknown escalation reason {reason!r}")
    with transaction.atomic():
        # Openers of one task take turns on its row. Without it InnoDB deadlocks them: each waiting
        # opener holds a shared lock on the task row (the foreign-key check of its insert), which
        # the first opener's UPDATE of the task must wait for. PostgreSQL's key-share lock would not
        # conflict, and SQLite runs one writer at a time anyway.
        Task.objects.select_for_update().filter(pk=task.pk).values_list("pk", flat=True).get()
        episode = Escalation.objects.filter(task=task, reason=reason).count() + 1
        try:
            with transaction.atomic():
                escalation = Escalation.objects.create(
                    task=task,
                    reason=reason,
                    severity=Escalation.Severity.HIGH if task.is_high_value else Escalation.Severity.NORMAL,
                    idempotency_key=f"{reason}:{episode}",
                    live_key=reason,
                    detail=detail,
                    context={"attempts": task.attempts, "error": task.last_error, "trace_id": current_trace_id()}
                    | (context or {}),
                )
        except IntegrityError:
            natural_key = Q(live_key=reason) | Q(idempotency_key=f"{reason}:{episode}")
            if not Escalation.objects.filter(natural_key, task=task).exists():
                raise  # not the natural key: a real failure, not a lost race
            return _live(task, reason), False
        EscalationEvent.objects.create(escalation=escalation, kind="opened", actor=actor, detail=detail)
        if Task.Status.ESCALATED in TRANSITIONS.get(task.status, frozenset()):
            task_transition(task=task, to=Task.Status.ESCALATED, actor=actor, reason=f"escalated: {reason}")
        notifications_enqueue(
            escalation=escalation,
            event=Notification.Event.OPENED,
            channels=channels_routed(severity=escalation.severity, tier=NotificationChannel.Tier.PRIMARY),
        )
    logger.warning("escalation_opened", escalation_id=escalation.pk, task_id=task.pk, reason=reason)
    return escalation, True


def _live(task: Task, reason: str) -> Escalation:
    existing = Escalation.objects.filter(task=task, live_key=reason).first()
    if existing is None:  # resolved between our insert and this read: let the caller try again
        raise EscalationConflict("The escalation changed while it was being opened; try again.")
    return existing


def escalation_acknowledge(*, escalation: Escalation, actor: str) -> Escalation:
    with transaction.atomic():
        now = timezone.now()
        if not Escalation.objects.filter(pk=escalation.pk, status=Escalation.Status.OPEN).update(
            status=Escalation.Status.ACKNOWLEDGED, acknowledged_at=now
        ):
            raise EscalationConflict("Only an open escalation can be acknowledged.", existing_id=escalation.pk)
        EscalationEvent.objects.create(escalation=escalation, kind="acknowledged", actor=actor)
        # Paging systems stop re-paging once someone has it; chat and e-mail need no message.
        paging = [c for c in channels_told(escalation=escalation) if c.kind == NotificationChannel.Kind.PAGERDUTY]
        notifications_enqueue(escalation=escalation, event=Notification.Event.ACKNOWLEDGED, channels=paging)
    escalation.refresh_from_db()
    return escalation


def escalation_assign(*, escalation: Escalation, assignee, actor: str) -> Escalation:
    """Give the escalation to an operator (or to nobody with `assignee=None`)."""
    with transaction.atomic():
        open_ones = Escalation.objects.exclude(status=Escalation.Status.RESOLVED)
        if not open_ones.filter(pk=escalation.pk).update(assignee=assignee):
            raise EscalationConflict("A resolved escalation cannot be reassigned.", existing_id=escalation.pk)
        name = assignee.get_username() if assignee is not None else "nobody"
        EscalationEvent.objects.create(escalation=escalation, kind="assigned", actor=actor, detail=f"to {name}")
    escalation.refresh_from_db()
    return escalation


# What resolving does to the task (None: nothing).
_TASK_OUTCOME = {
    Escalation.Resolution.RETRIED: Task.Status.PROCESSING,
    Escalation.Resolution.COMPLETED_MANUALLY: Task.Status.COMPLETED,
    Escalation.Resolution.FAILED: Task.Status.FAILED,
    Escalation.Resolution.REFUNDED: Task.Status.FAILED,
    Escalation.Resolution.DISMISSED: None,
}


def escalation_resolve(
    *, escalation: Escalation, resolution: str, actor: str, note: str = "", deliverable: File | None = None
) -> Escalation:
    """Close the episode and apply its outcome to the task, in one transaction; 409 if already resolved.

    `deliverable` is the finished work done by hand: it is stored for the client in the same
    transaction and goes only with `completed_manually`. A refused resolution keeps neither the
    row nor the stored file.
    """
    if resolution not in _TASK_OUTCOME:
        raise ValueError(f"Unknown resolution {resolution!r}")
    if deliverable is not None and resolution != Escalation.Resolution.COMPLETED_MANUALLY:
        raise ValueError("A deliverable goes with the completed_manually resolution only.")
    stored = None
    try:
        with transaction.atomic():
            if deliverable is not None:
                stored = deliverable_add(
                    task=escalation.task,
                    name=deliverable.name,
                    content=deliverable.read(),
                    content_type=getattr(deliverable, "content_type", None) or "application/octet-stream",
                )
            return _resolve(escalation=escalation, resolution=resolution, actor=actor, note=note)
    except BaseException:
        if stored is not None:  # the rollback removed the row, not the file it pointed to
            stored.file.delete(save=False)
        raise


def _resolve(*, escalation: Escalation, resolution: str, actor: str, note: str) -> Escalation:
    resolved = (
        Escalation.objects.filter(pk=escalation.pk)
        .exclude(status=Escalation.Status.RESOLVED)
        .update(
            status=Escalation.Status.RESOLVED,
            resolution=resolution,
            resolved_at=timezone.now(),
            live_key=None,
        )
    )
    if not resolved:
        raise EscalationConflict("This escalation is already resolved.", existing_id=escalation.pk)
    EscalationEvent.objects.create(escalation=escalation, kind="resolved", actor=actor, detail=note)
    target = _TASK_OUTCOME[resolution]
    task = Task.objects.select_for_update().get(pk=escalation.task_id)
    if target is not None and task.status != target:
        if resolution == Escalation.Resolution.COMPLETED_MANUALLY and not task.deliverables.exists():
            raise EscalationConflict("Upload a deliverable before completing the task by hand.")
        # A retry is a fresh run of attempts, handed to the pipeline once this commits (the cycle
        # sends it again if the broker is down meanwhile).
        retried = resolution == Escalation.Resolution.RETRIED
        task_transition(
            task=task,
            to=target,
            actor=actor,
            reason=f"escalation resolved: {resolution}",
            **({"attempts": 0} if retried else {}),
        )
        if retried:
            transaction.on_commit(lambda: task_work.delay(task.pk), robust=True)
    if resolution == Escalation.Resolution.REFUNDED:
        task_flag(task=task, note="Refund the client.", actor=actor)
    escalation.refresh_from_db()
    notifications_enqueue(
        escalation=escalation,
        event=Notification.Event.RESOLVED,
        channels=channels_told(escalation=escalation),
        resolution=resolution,
        note=note,
    )
    return escalation


# --- Timers and the relay ---------------------------------------------------------------

Event = Notification.Event


def escalation_timers_run(*, now: datetime | None = None) -> dict[str, int]:
    """Re-notify open escalations nobody acknowledged in time; hand older ones to the secondary channels.

    Each step is a compare-and-set on the escalation (`reminded_at`,
    `secondary_at`) in the same transaction as its outbox rows, so concurrent
    runs act once. Acknowledged and resolved escalations are left alone.
    """
    now = now or timezone.now()
    steps = [
        ("reminded_at", Event.REMINDER, NotificationChannel.Tier.PRIMARY, settings.ESCALATION_REMIND_AFTER_MINUTES),
        ("secondary_at", Event.SECONDARY, NotificationChannel.Tier.SECONDARY,
         settings.ESCALATION_SECONDARY_AFTER_MINUTES),
    ]  # fmt: skip
    counts = {}
    for field, event, tier, minutes in steps:
        not_yet = {f"{field}__isnull": True}
        late = Escalation.objects.filter(
            status=Escalation.Status.OPEN, created_at__lte=now - timedelta(minutes=minutes), **not_yet
        ).select_related("task")
        counts[event] = 0
        for escalation in late[: settings.NOTIFY_BATCH_SIZE * 10]:
            with transaction.atomic():
                claimed = Escalation.objects.filter(pk=escalation.pk, status=Escalation.Status.OPEN, **not_yet).update(
                    **{field: now}
                )
                if not claimed:
                    continue
                EscalationEvent.objects.create(escalation=escalation, kind=event, actor="timer")
                notifications_enqueue(
                    escalation=escalation,
                    event=event,
                    channels=channels_routed(severity=escalation.severity, tier=tier),
                    now=now,
                )
                counts[event] += 1
    return {"reminded": counts[Event.REMINDER], "sent_to_secondary": counts[Event.SECONDARY]}


def notification_requeue(*, notification: Notification, now: datetime | None = None) -> bool:
    """Give a dead row a fresh set of attempts (after an operator fixed the channel); relayed after commit."""
    requeued = Notification.objects.filter(pk=notification.pk, status=Notification.Status.DEAD).update(
        status=Notification.Status.PENDING, attempts=0, next_attempt_at=now or timezone.now()
    )
    if requeued:
        transaction.on_commit(notifications_relay_kick)  # the kick itself never raises
    return bool(requeued)


def notifications_relay(
    *, now: datetime | None = None, limit: int | None = None, timers: bool = True, on_row: Callable | None = None
) -> dict:
    """The relay operation: fire due timers, send what is due, forget what is long done.

    Beat, the agency cycle and `manage.py relay_notifications` all run this; any number
    may run at once. `limit` caps the rows sent in this run; `on_row(outcome)` is called
    after each (progress bars).
    """
    with relaying():  # rows the timers queue are sent by this run, not by an extra kick each
        fired = escalation_timers_run(now=now) if timers else {"reminded": 0, "sent_to_secondary": 0}
        return fired | outbox_relay(NOTIFICATIONS, now=now, limit=limit, on_row=on_row)
