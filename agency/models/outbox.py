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


class ClientEmailKind(models.TextChoices):
    DELIVERY_LINK = "delivery_link", "Delivery link"


class ClientEmail(OutboxRow):
    """An e-mail to a client, written in the transaction that makes it necessary and sent by the relay.

    A delivery link e-mail carries no token until it is sent: the relay issues a
    fresh link just before sending (only its hash is stored) and revokes it if the
    send fails, so no usable token ever waits in the database.
    """

    Kind = ClientEmailKind

    kind = models.CharField(max_length=20, choices=ClientEmailKind.choices)
    task = models.ForeignKey("agency.Task", on_delete=models.PROTECT, related_name="emails")
    to = models.EmailField(max_length=254)
    link = models.ForeignKey(
        "agency.DeliveryLink", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The link the latest attempt issued (revoked if that attempt failed).",
    )  # fmt: skip

    class Meta:
        verbose_name = "client e-mail"
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="agency_clientemail_due")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=OutboxStatus.values), name="agency_clientemail_known_status"
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=ClientEmailKind.values), name="agency_clientemail_known_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for task #{self.task_id} to {self.to} ({self.status})"
