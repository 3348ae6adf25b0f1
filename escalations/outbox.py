"""The notification outbox: routing, writing rows, and the relay that sends them.

Rows are written by `notifications_enqueue` inside the transaction that makes
them necessary, so a rolled-back escalation never notifies anyone. The relay
sends them after commit, from beat, the `relay_notifications` command or a
kick after commit, in any number of processes at once:

- A claim is one UPDATE that sets a fresh `claim_token` on due rows and
  re-checks "due" itself, so two relays never both own a row; no row locks
  are involved. Sending happens outside any transaction and lock.
- Finishing a row is a compare-and-set on its claim token: a relay that
  outlived its lease cannot overwrite the work of the relay that took over.
- A row waits while an earlier row for the same channel and escalation is
  unsent, so a "resolved" never overtakes its "opened" (PagerDuty would drop
  the resolve and keep the incident open).
- Just before sending, the row is checked against the escalation as it is
  now: a reminder after an acknowledgement, an opening after the resolution,
  or a closing message to a channel that was never told is cancelled instead.
"""

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from escalations.channels import SendFailed, send, short
from escalations.models import Escalation, Notification, NotificationChannel
from tracing.context import trace_carrier, trace_continued

logger = structlog.get_logger(__name__)
Event = Notification.Event
Status = Notification.Status

# Events that only matter while nobody has picked the escalation up.
WHILE_OPEN = frozenset({Event.REMINDER, Event.SECONDARY})
# Events that tell someone about the escalation (later acknowledge/resolve go to them).
TELLING = (Event.OPENED, Event.REMINDER, Event.SECONDARY)


def channels_routed(*, severity: str, tier: str) -> list[NotificationChannel]:
    """Active channels of `tier` that take escalations of `severity`."""
    channels = NotificationChannel.objects.filter(active=True, tier=tier).order_by("pk")
    return [channel for channel in channels if severity in (channel.severities or [])]


def channels_told(*, escalation: Escalation) -> list[NotificationChannel]:
    """Channels that were (or are about to be) told about this escalation."""
    told = Notification.objects.filter(escalation=escalation, event__in=TELLING).exclude(status=Status.CANCELLED)
    return list(NotificationChannel.objects.filter(pk__in=told.values("channel_id")).order_by("pk"))


def message_payload(*, escalation: Escalation, event: str, **extra) -> dict:
    """What the message says, frozen when the row is written (the relay may send it much later)."""
    task = escalation.task
    path = reverse("admin:escalations_escalation_change", args=[escalation.pk])
    return {
        "event": event,
        "escalation_id": escalation.pk,
        "incident_key": escalation.incident_key,
        "task_id": task.pk,
        "task_title": task.title,
        "reason": escalation.reason,
        "severity": escalation.severity,
        "detail": escalation.detail,
        "attempts": escalation.context.get("attempts", task.attempts),
        "error": escalation.context.get("error") or "",
        "url": settings.PUBLIC_BASE_URL.rstrip("/") + path,
        **extra,
    }


def notifications_enqueue(
    *, escalation: Escalation, event: str, channels: list[NotificationChannel], now: datetime | None = None, **extra
) -> None:
    """Queue one message per channel; a cause already queued for a channel is skipped (its dedup key,
    enforced by the database). Call inside the transaction that makes the message necessary."""
    if not channels:
        return
    payload = message_payload(escalation=escalation, event=event, **extra)
    due, carrier = now or timezone.now(), trace_carrier()
    dedup_key = f"escalation-{escalation.pk}:{event}"
    Notification.objects.bulk_create(
        [
            Notification(
                channel=channel,
                escalation=escalation,
                event=event,
                dedup_key=dedup_key,
                payload=payload,
                next_attempt_at=due,
                trace_context=carrier,
            )
            for channel in channels
        ],
        ignore_conflicts=True,
    )
    transaction.on_commit(notifications_relay_kick, robust=True)


# Set while this thread relays: rows it queues itself (timers) need no extra kick.
_relaying = contextvars.ContextVar("relaying", default=False)


def notifications_relay_kick() -> None:
    """Ask a worker to relay now; if the broker is down, beat or the command will (rows wait in the table)."""
    from escalations.tasks import notifications_relay

    if _relaying.get():
        return
    try:
        notifications_relay.apply_async(retry=False)
    except Exception as exc:  # any broker failure: the rows are safe in the table
        logger.warning("notifications_relay_kick_failed", error=f"{type(exc).__name__}: {exc}")


# --- The relay ----------------------------------------------------------------------


def _due(now: datetime) -> Q:
    return Q(status=Status.PENDING, next_attempt_at__lte=now) | Q(status=Status.SENDING, claimed_until__lt=now)


def outbox_due_count(*, now: datetime) -> int:
    return Notification.objects.filter(_due(now)).count()


# Rounds a claim reads again after other relays took every row it read.
CLAIM_ROUNDS = 5


def outbox_claim(*, now: datetime, limit: int) -> tuple[uuid.UUID, list[Notification]]:
    """Claim up to `limit` due rows for this relay; returns the claim token and the rows.

    The oldest due rows are read without locks, then one UPDATE takes those
    that are still due. No `select_for_update(skip_locked=True)`: InnoDB locks
    every row a sorted locking read looks at, not only those it returns, so a
    second MariaDB relay would find all rows locked and stop while the first
    one claims. Rows another relay took between our read and our UPDATE are
    simply not ours; the next round reads past them.
    """
    token = uuid.uuid4()
    earlier_unsent = Notification.objects.filter(
        channel=OuterRef("channel"),
        escalation=OuterRef("escalation"),
        pk__lt=OuterRef("pk"),
        status__in=[Status.PENDING, Status.SENDING],
    )
    candidates = Notification.objects.filter(_due(now)).exclude(Exists(earlier_unsent))
    candidates = candidates.order_by("next_attempt_at", "pk")
    for _ in range(CLAIM_ROUNDS):
        ids = list(candidates.values_list("pk", flat=True)[:limit])
        if not ids:
            return token, []
        claimed = Notification.objects.filter(_due(now), pk__in=ids).update(
            status=Status.SENDING,
            claim_token=token,
            claimed_until=now + timedelta(seconds=settings.NOTIFY_CLAIM_SECONDS),
            attempts=F("attempts") + 1,
        )
        if claimed:
            rows = Notification.objects.filter(pk__in=ids, claim_token=token).select_related("channel").order_by("pk")
            return token, list(rows)
    return token, []


def backoff_seconds(attempts: int) -> float:
    """Wait after the `attempts`-th failed send: base · 2^(attempts-1), capped."""
    return float(min(settings.NOTIFY_BACKOFF_MAX_SECONDS, settings.NOTIFY_BACKOFF_BASE_SECONDS * 2 ** (attempts - 1)))


def _stale_reason(notification: Notification) -> str:
    """Why this row must not be sent any more ("" when it still should be), read fresh from the database."""
    status = Escalation.objects.filter(pk=notification.escalation_id).values_list("status", flat=True).first()
    if notification.event in WHILE_OPEN and status != Escalation.Status.OPEN:
        return "The escalation was picked up before this went out."
    if notification.event in TELLING and status == Escalation.Status.RESOLVED:
        return "The escalation was resolved before this went out."
    if notification.event in (Event.ACKNOWLEDGED, Event.RESOLVED):
        told = Notification.objects.filter(
            channel_id=notification.channel_id,
            escalation_id=notification.escalation_id,
            event__in=TELLING,
            status=Status.SENT,
        )
        if not told.exists():
            return "This channel was never told about the escalation."
    return ""


def notification_send(*, notification: Notification, token: uuid.UUID, now: datetime) -> str:
    """Send one claimed row and record the outcome.

    Returns "sent", "retry_later", "dead", "cancelled", or "lost" when this
    relay's claim ran out and another relay took the row over (then nothing
    is sent here). The claim is renewed just before sending, so a long batch
    never sends a row that another relay has meanwhile claimed; a single send
    would have to outlast the whole lease (`NOTIFY_CLAIM_SECONDS`, many times
    the per-operation timeout) for that to happen.
    """
    mine = Notification.objects.filter(pk=notification.pk, claim_token=token)
    lease = timedelta(seconds=settings.NOTIFY_CLAIM_SECONDS)
    if not mine.filter(claimed_until__gt=now).update(claimed_until=now + lease):
        logger.warning("notification_claim_lost", notification_id=notification.pk)
        return "lost"
    done = {"claim_token": None, "claimed_until": None}
    if notification.attempts > settings.NOTIFY_MAX_ATTEMPTS:  # claimed again and again by relays that died
        mine.update(status=Status.DEAD, last_error=f"Gave up after {notification.attempts - 1} attempts.", **done)
        return "dead"
    stale = _stale_reason(notification)
    if stale:
        mine.update(status=Status.CANCELLED, last_error=stale, **done)
        return "cancelled"
    channel = notification.channel
    with trace_continued(notification.trace_context, f"notify {channel.kind}") as span:
        span.set_attribute("agency.notification_id", notification.pk)
        try:
            send(channel, notification.payload, delivery_id=str(notification.pk))
        except Exception as exc:
            # Anything else is a bug or a bad configuration: retried like a failure, never blocking the batch.
            failure = exc if isinstance(exc, SendFailed) else SendFailed(f"{type(exc).__name__}: {exc}")
            return _failed(notification, mine, failure, now=now, done=done)
    if not mine.update(status=Status.SENT, sent_at=timezone.now(), last_error="", **done):
        logger.error("notification_sent_after_claim_lost", notification_id=notification.pk, channel=channel.name)
    logger.info("notification_sent", notification_id=notification.pk, channel=channel.name, kind=notification.event)
    return "sent"


def _failed(notification: Notification, mine, exc: SendFailed, *, now: datetime, done: dict) -> str:
    error, channel = short(str(exc), 200), notification.channel.name
    if exc.permanent or notification.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
        mine.update(status=Status.DEAD, last_error=error, **done)
        logger.error("notification_dead", notification_id=notification.pk, channel=channel, error=error)
        return "dead"
    wait = max(backoff_seconds(notification.attempts), exc.retry_after or 0)
    mine.update(status=Status.PENDING, next_attempt_at=now + timedelta(seconds=wait), last_error=error, **done)
    logger.warning("notification_retry", notification_id=notification.pk, channel=channel, error=error, wait_s=wait)
    return "retry_later"


def outbox_send_due(*, now: datetime | None = None, limit: int | None = None, on_row=None) -> dict[str, int]:
    """Send due rows, batch by batch, until none is due or `limit` rows were handled.

    Safe to run in several processes at once. `now` is for a controlled clock
    in tests; `on_row(outcome)` is called after each row (progress bars).
    """
    counts = dict.fromkeys(("sent", "retry_later", "dead", "cancelled", "lost"), 0)
    handled = 0
    while limit is None or handled < limit:
        batch = settings.NOTIFY_BATCH_SIZE if limit is None else min(settings.NOTIFY_BATCH_SIZE, limit - handled)
        token, rows = outbox_claim(now=now or timezone.now(), limit=batch)
        if not rows:
            break
        for row in rows:
            outcome = notification_send(notification=row, token=token, now=now or timezone.now())
            counts[outcome] += 1
            handled += 1
            if on_row is not None:
                on_row(outcome)
    return counts


@contextmanager
def relaying() -> Iterator[None]:
    """Mark this thread as a relay: rows it queues (timers) are sent by it, not by an extra kick."""
    marker = _relaying.set(True)
    try:
        yield
    finally:
        _relaying.reset(marker)


def outbox_purge(*, now: datetime | None = None) -> int:
    """Forget sent and cancelled rows older than `NOTIFY_KEEP_DAYS`; dead ones stay for an operator."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.NOTIFY_KEEP_DAYS)
    deleted, _ = Notification.objects.filter(created_at__lt=cutoff, status__in=[Status.SENT, Status.CANCELLED]).delete()
    return deleted
