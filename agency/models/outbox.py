"""The fields every outbox row has (the relay is `agency.outbox`; docs/architecture.md)."""

from django.db import models

from tracing.models import TraceStamped


class OutboxStatus(models.TextChoices):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"
    CANCELLED = "cancelled", "Cancelled (no longer relevant)"


class OutboxRow(TraceStamped):
    """One side effect waiting to happen, or done.

    A relay claims a row by setting `claim_token` and `claimed_until` in one
    UPDATE; a claim older than its lease (a relay that died mid-send) makes
    the row due again. `trace_context` holds the W3C headers of the
    transaction that wrote the row, which sending continues.
    """

    Status = OutboxStatus

    status = models.CharField(max_length=10, choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    trace_context = models.JSONField(default=dict, blank=True)

    class Meta:
        abstract = True
