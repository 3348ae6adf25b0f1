"""Escalations: work the agents could not finish, handed to an operator (docs/escalations.md)."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator, validate_email
from django.db import models
from django.db.models import Q

from agency.models import Task
from agency.models.fields import ExactCharField
from agency.models.outbox import OutboxRow, OutboxStatus
from tracing.models import TraceStamped


class EscalationStatus(models.TextChoices):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class EscalationReason(models.TextChoices):
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    HIGH_VALUE_FAILURE = "high_value_failure"
    NO_CAPABLE_AGENT = "no_capable_agent"
    ARENA_NO_WINNER = "arena_no_winner"
    BUDGET_EXCEEDED = "budget_exceeded"
    INTEGRATION = "integration"


class EscalationSeverity(models.TextChoices):
    NORMAL = "normal"
    HIGH = "high"


class EscalationResolution(models.TextChoices):
    RETRIED = "retried"
    COMPLETED_MANUALLY = "completed_manually"
    FAILED = "failed"
    REFUNDED = "refunded"
    DISMISSED = "dismissed"


class Escalation(TraceStamped):
    """One episode of a task needing a person, for one reason.

    `idempotency_key` is "<reason>:<episode>", unique per task. `live_key` holds
    the reason while the escalation is not resolved and is NULL afterwards, so
    the unique (task, live_key) allows one live escalation per task and reason
    on every database (NULLs never collide; no partial index needed).
    """

    Status = EscalationStatus
    Reason = EscalationReason
    Severity = EscalationSeverity
    Resolution = EscalationResolution

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="escalations")
    reason = models.CharField(max_length=30, choices=Reason.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.NORMAL)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN, editable=False)
    idempotency_key = ExactCharField(max_length=100, editable=False)
    live_key = ExactCharField(max_length=30, null=True, blank=True, editable=False)  # NULL = resolved
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    detail = models.TextField(blank=True)
    context = models.JSONField(default=dict, blank=True, help_text="Error, attempts, trace id at the time.")
    resolution = models.CharField(max_length=20, choices=Resolution.choices, blank=True, editable=False)
    notes = models.TextField(blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True, editable=False)
    resolved_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Timers (docs/escalations.md): when the reminder and the hand-over to secondary channels went out.
    reminded_at = models.DateTimeField(null=True, blank=True, editable=False)
    secondary_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["task", "idempotency_key"], name="escalations_one_per_task_and_key"),
            models.UniqueConstraint(fields=["task", "live_key"], name="escalations_one_live_per_task_and_reason"),
            models.CheckConstraint(condition=Q(status__in=EscalationStatus.values), name="escalations_known_status"),
            models.CheckConstraint(condition=Q(reason__in=EscalationReason.values), name="escalations_known_reason"),
            models.CheckConstraint(
                condition=Q(severity__in=EscalationSeverity.values), name="escalations_known_severity"
            ),
            models.CheckConstraint(
                condition=(Q(status="resolved") & Q(resolution__in=EscalationResolution.values) & Q(live_key=None))
                | (~Q(status="resolved") & Q(resolution="") & Q(live_key__isnull=False)),
                name="escalations_resolution_iff_resolved",
            ),
        ]

    def __str__(self) -> str:
        return f"Escalation #{self.pk} task #{self.task_id} {self.reason} ({self.status})"

    @property
    def incident_key(self) -> str:
        """The key paging systems group this episode by (PagerDuty's `dedup_key`): new per episode."""
        return f"agency-task-{self.task_id}-{self.idempotency_key}"


class EscalationEvent(TraceStamped):
    """The escalation's timeline: opened, acknowledged, assigned, resolved, notes."""

    escalation = models.ForeignKey(Escalation, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20)
    actor = models.CharField(max_length=100)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor}"


class ChannelKind(models.TextChoices):
    EMAIL = "email"
    SLACK = "slack", "Slack incoming webhook"
    TELEGRAM = "telegram", "Telegram bot"
    WEBHOOK = "webhook", "Signed webhook"
    PAGERDUTY = "pagerduty", "PagerDuty Events v2"


class ChannelTier(models.TextChoices):
    PRIMARY = "primary"
    SECONDARY = "secondary", "Secondary (after the escalation timer)"


# A channel's secret is read from NOTIFY_SECRET_<ITS SLUG> and no other variable, so whoever edits
# channels in the admin can neither name the database URL or Django's key nor borrow another
# channel's bot token or routing key.
SECRET_ENV_PREFIX = "NOTIFY_SECRET_"  # noqa: S105 (a name prefix, not a secret)
slug_validator = RegexValidator(r"^[a-z0-9_]+$", "Lowercase letters, digits and underscores only.")


def _all_severities() -> list[str]:
    return list(EscalationSeverity.values)


class NotificationChannel(models.Model):
    """Where operators are told about escalations; configured in the admin.

    `target` is where a message goes: e-mail addresses (comma-separated), the
    Slack or webhook URL, the Telegram chat id, or a PagerDuty Events URL
    (blank: `PAGERDUTY_EVENTS_URL`). Secrets never live in the database: the
    channel's own variable, `NOTIFY_SECRET_<SLUG>` (see `secret_variable`),
    holds the Telegram bot token, the webhook signing secret, the PagerDuty
    routing key, or the Slack webhook URL itself (then `target` stays blank).
    The slug is set when the channel is created and never changes, so the
    binding between a channel and its secret does not either.
    """

    Kind = ChannelKind
    Tier = ChannelTier

    name = models.CharField(max_length=100)
    slug = models.CharField(
        max_length=40,
        validators=[slug_validator],
        help_text=f"Fixed once created. The channel's secret is read from {SECRET_ENV_PREFIX}<SLUG IN CAPITALS>.",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    target = models.CharField(max_length=500, blank=True)
    severities = models.JSONField(default=_all_severities, help_text='Severities routed here, e.g. ["high"].')
    tier = models.CharField(max_length=10, choices=Tier.choices, default=Tier.PRIMARY)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tier", "name"]
        constraints = [
            models.UniqueConstraint(fields=["name"], name="escalations_channel_unique_name"),
            models.UniqueConstraint(fields=["slug"], name="escalations_channel_unique_slug"),
            models.CheckConstraint(condition=Q(kind__in=ChannelKind.values), name="escalations_channel_known_kind"),
            models.CheckConstraint(condition=Q(tier__in=ChannelTier.values), name="escalations_channel_known_tier"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.tier})"

    @property
    def secret_variable(self) -> str:
        """The one environment variable this channel may read its secret from."""
        return SECRET_ENV_PREFIX + self.slug.upper()

    @property
    def target_is_url(self) -> bool:
        return self.kind in (ChannelKind.SLACK, ChannelKind.WEBHOOK, ChannelKind.PAGERDUTY) and bool(self.target)

    def clean(self):
        from escalations.targets import target_problem

        errors = {}
        unknown = set(self.severities or []) - set(EscalationSeverity.values)
        if not isinstance(self.severities, list) or unknown or not self.severities:
            errors["severities"] = f"A non-empty list of {EscalationSeverity.values}."
        if self.kind in (ChannelKind.EMAIL, ChannelKind.TELEGRAM, ChannelKind.WEBHOOK) and not self.target:
            errors["target"] = "Say where messages go."
        elif self.kind == ChannelKind.EMAIL:
            try:
                for address in self.email_recipients():
                    validate_email(address)
            except ValidationError:
                errors["target"] = "E-mail addresses, separated by commas."
        elif self.target_is_url:
            problem = target_problem(self.target)
            if problem:
                errors["target"] = problem
        if errors:
            raise ValidationError(errors)

    def email_recipients(self) -> list[str]:
        return [address.strip() for address in self.target.split(",") if address.strip()]


NotificationStatus = OutboxStatus


class NotificationEvent(models.TextChoices):
    OPENED = "opened"
    REMINDER = "reminder"
    SECONDARY = "secondary"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Notification(OutboxRow):
    """One message to one channel: a row of the transactional outbox (docs/escalations.md).

    Written in the transaction that makes it necessary and sent by the relay
    (`agency.outbox`) after commit. `dedup_key` is unique per channel, so no
    cause is ever queued twice for a channel.
    """

    Status = NotificationStatus
    Event = NotificationEvent

    channel = models.ForeignKey(NotificationChannel, on_delete=models.PROTECT, related_name="notifications")
    escalation = models.ForeignKey(Escalation, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=20, choices=Event.choices)
    dedup_key = ExactCharField(max_length=150)
    payload = models.JSONField(default=dict)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="escalations_notification_due")]
        constraints = [
            models.UniqueConstraint(fields=["channel", "dedup_key"], name="escalations_notification_once_per_channel"),
            models.CheckConstraint(
                condition=Q(status__in=NotificationStatus.values), name="escalations_notification_known_status"
            ),
            models.CheckConstraint(
                condition=Q(event__in=NotificationEvent.values), name="escalations_notification_known_event"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} of escalation #{self.escalation_id} to {self.channel_id} ({self.status})"
