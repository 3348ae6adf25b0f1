"""The notification outbox: routing, writing rows, and the relay that sends them.

Rows are written by `notifications_enqueue` inside the transaction that makes
them necessary, so a rolled-back escalation never notifies anyone. The relay
sends them after commit, from beat, the `relay_notifications` command or a
kick after commit, in any number of processes at once:

- Claims, leases, retries and dead rows are the shared relay of
  `agency.outbox`, the one every external side effect goes through.
- A row waits while an earlier row for the same channel and escalation is
  unsent, so a "resolved" never overtakes its "opened" (PagerDuty would drop
  the resolve and keep the incident open).
- Just before sending, the row is checked against the escalation as it is
  now: a reminder after an acknowledgement, an opening after the resolution,
  or a closing message to a channel that was never told is cancelled instead.
"""

import uuid
from datetime import datetime

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from agency import outbox as engine
from agency.outbox import Outbox, outbox_due, outbox_kick
from escalations.channels import send
from escalations.models import Escalation, Notification, NotificationChannel
from tracing.context import trace_carrier

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
    transaction.on_commit(notifications_relay_kick)  # the kick itself never raises


def notifications_relay_kick() -> None:
    """Ask a worker to relay now; if the broker is down, beat or the command will (rows wait in the table)."""
    from escalations.tasks import notifications_relay

    outbox_kick(notifications_relay, name="notifications_relay")


# --- The relay (the shared engine in agency.outbox, with what is particular to notifications) ---


def _earlier_unsent() -> Q:
    """Rows that must wait: an earlier row for the same channel and escalation is still unsent, so a
    "resolved" never overtakes its "opened" (PagerDuty would drop the resolve and keep the incident open)."""
    earlier = Notification.objects.filter(
        channel=OuterRef("channel"),
        escalation=OuterRef("escalation"),
        pk__lt=OuterRef("pk"),
        status__in=[Status.PENDING, Status.SENDING],
    )
    return Q(Exists(earlier))


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


NOTIFICATIONS = Outbox(
    model=Notification,
    name="notification",
    send=lambda row: send(row.channel, row.payload, delivery_id=str(row.pk)),
    span_name=lambda row: f"notify {row.channel.kind}",
    stale=_stale_reason,
    held_back=_earlier_unsent,
    select_related=("channel",),
)


def outbox_due_count(*, now: datetime) -> int:
    return Notification.objects.filter(outbox_due(now)).count()


def outbox_claim(*, now: datetime, limit: int) -> tuple[uuid.UUID, list[Notification]]:
    """Claim up to `limit` due notifications for this relay; returns the claim token and the rows."""
    return engine.outbox_claim(NOTIFICATIONS, now=now, limit=limit)


def notification_send(*, notification: Notification, token: uuid.UUID, now: datetime) -> str:
    """Send one claimed notification and record the outcome (see `agency.outbox.outbox_row_send`)."""
    return engine.outbox_row_send(NOTIFICATIONS, row=notification, token=token, now=now)


def outbox_send_due(*, now: datetime | None = None, limit: int | None = None, on_row=None) -> dict[str, int]:
    """Send due notifications until none is due or `limit` were handled; safe in several processes."""
    return engine.outbox_send_due(NOTIFICATIONS, now=now, limit=limit, on_row=on_row)


def outbox_purge(*, now: datetime | None = None) -> int:
    """Forget sent and cancelled notifications older than `NOTIFY_KEEP_DAYS`; dead ones stay."""
    return engine.outbox_purge(Notification, now=now)
