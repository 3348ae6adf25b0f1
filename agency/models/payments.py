"""Payment provider events, each stored once (docs/tasks.md)."""

from django.db import models
from django.db.models import Q

from agency.models.fields import ExactCharField
from agency.models.tasks import Task
from tracing.models import TraceStamped


class StripeEventOutcome(models.TextChoices):
    PROCESSED = "processed"  # changed the task as the event asked
    IGNORED = "ignored"  # nothing to do (unknown type, task already further on)
    FLAGGED = "flagged"  # not applied; an operator must look (unpaid, amount mismatch)


class StripeEvent(TraceStamped):
    """A Stripe webhook event. The unique event id makes a replay a no-op."""

    Outcome = StripeEventOutcome

    event_id = ExactCharField(max_length=255)
    type = models.CharField(max_length=100)
    task = models.ForeignKey(Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="stripe_events")
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    detail = models.TextField(blank=True)
    payload = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event_id"], name="agency_stripeevent_unique_event_id"),
            models.CheckConstraint(
                condition=Q(outcome__in=StripeEventOutcome.values), name="agency_stripeevent_known_outcome"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id} ({self.outcome})"
