"""Escalations: work the agents could not finish, handed to an operator (SPEC §7)."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from agency.models import Task
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
    idempotency_key = models.CharField(max_length=100, editable=False)
    live_key = models.CharField(max_length=30, null=True, blank=True, editable=False)  # noqa: DJ001 (NULL = resolved)
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    detail = models.TextField(blank=True)
    context = models.JSONField(default=dict, blank=True, help_text="Error, attempts, trace id at the time.")
    resolution = models.CharField(max_length=20, choices=Resolution.choices, blank=True, editable=False)
    notes = models.TextField(blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True, editable=False)
    resolved_at = models.DateTimeField(null=True, blank=True, editable=False)

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
