"""The history of agency cycles: what each run did, step by step."""

from django.db import models
from django.db.models import Q

from tracing.models import TraceStamped


class CycleStatus(models.TextChoices):
    QUEUED = "queued"  # handed to the workers, not started yet
    RUNNING = "running"
    FINISHED = "finished"  # every step ok
    FAILED = "failed"  # at least one step failed; the later ones still ran


class CycleTrigger(models.TextChoices):
    COMMAND = "command"  # run_agency, demo: in the calling process
    WORKER = "worker"  # beat or the API: one Celery task per step


class CycleRun(TraceStamped):
    """One run of the agency cycle (docs/architecture.md), from a command, the demo or a worker.

    Steps are recorded as they finish, so a run that is still going (or that
    died) shows how far it got. The row carries the trace of the unit of work
    that started it: the id a command prints finds it in the trace search.
    """

    Status = CycleStatus
    Trigger = CycleTrigger

    trigger = models.CharField(max_length=16, choices=CycleTrigger.choices)
    status = models.CharField(max_length=16, choices=CycleStatus.choices, default=CycleStatus.RUNNING)
    planned = models.JSONField(default=list, help_text="Names of the steps this run was to do, in order.")
    steps = models.JSONField(default=list, help_text="What each finished step did: name, ok, duration, summary, error.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=CycleStatus.values), name="agency_cyclerun_known_status"),
            models.CheckConstraint(condition=Q(trigger__in=CycleTrigger.values), name="agency_cyclerun_known_trigger"),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running"], finished_at__isnull=True)
                | (Q(status__in=["finished", "failed"]) & Q(finished_at__isnull=False)),
                name="agency_cyclerun_finished_when_done",
            ),
        ]

    def __str__(self) -> str:
        return f"Cycle #{self.pk} ({self.trigger}, {self.status})"

    def trace_summary(self) -> str:
        done = ", ".join(f"{s['name']} {'ok' if s['ok'] else 'FAILED'}" for s in self.steps)
        return f"{self} — {done or 'no step finished yet'}"
