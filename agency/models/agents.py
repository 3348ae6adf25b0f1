"""Agents, their attempts at tasks, and what the agency learns from approved work (docs/agents.md)."""

from django.db import models
from django.db.models import Q

from agency.models.gateway import COST, ModelDeployment, Route
from agency.models.tasks import Domain, Task
from tracing.models import TraceStamped


class AgentKind(models.TextChoices):
    BASELINE = "baseline"  # no model: deterministic reports of tables
    LLM = "llm"  # plan → work → review through the model gateway


class AgentProfile(models.Model):
    """A way of working: a kind of agent, the route its model calls take, a prompt style and how
    many attempts it gets at one task. The pipeline gives a task the active profile of its domain
    (or of every domain) with the lowest `priority`."""

    Kind = AgentKind

    name = models.SlugField(max_length=50)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    domain = models.ForeignKey(
        Domain, null=True, blank=True, on_delete=models.CASCADE, related_name="agent_profiles",
        help_text="Empty: every domain.",
    )  # fmt: skip
    route = models.ForeignKey(
        Route, null=True, blank=True, on_delete=models.PROTECT, related_name="agent_profiles",
        help_text="LLM agents: empty takes the routing table's route for the task's domain and each purpose.",
    )  # fmt: skip
    prompt_style = models.TextField(blank=True, help_text="Added to the LLM agent's instructions.")
    retry_budget = models.PositiveSmallIntegerField(
        default=3, help_text="Attempts at one task, at most TASK_MAX_ATTEMPTS."
    )
    priority = models.PositiveSmallIntegerField(default=100, help_text="Lower goes first.")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["priority", "name"]
        constraints = [
            models.UniqueConstraint(fields=["name"], name="agency_agentprofile_unique_name"),
            models.CheckConstraint(condition=Q(kind__in=AgentKind.values), name="agency_agentprofile_known_kind"),
            models.CheckConstraint(condition=Q(retry_budget__gte=1), name="agency_agentprofile_retry_budget_from_one"),
        ]

    def __str__(self) -> str:
        return self.name


class RoutingChange(TraceStamped):
    """An audited change of the profile routed for a domain: a promotion by the arena or an
    operator's revert. Written only by `agency.services.routing`, with the change itself."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="routing_changes")
    from_profile = models.ForeignKey(
        AgentProfile, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Empty: the domain followed profile priorities.",
    )  # fmt: skip
    to_profile = models.ForeignKey(AgentProfile, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    actor = models.CharField(max_length=100)
    reason = models.TextField(blank=True)
    reverts = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reverted_by",
        help_text="The change this one undid.",
    )  # fmt: skip

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(from_profile=models.F("to_profile")), name="agency_routingchange_changes_something"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.domain_id}: {self.from_profile_id or 'priority'} → {self.to_profile_id or 'priority'}"


class AttemptOutcome(models.TextChoices):
    RUNNING = "running"
    APPROVED = "approved"  # the work passed review; it became (or may become) the deliverable
    REJECTED = "rejected"  # review said no
    ERROR = "error"  # the attempt broke (model unavailable, invalid plan, unreadable input…)
    DECLINED = "declined"  # the agent cannot do this kind of work at all
    ABANDONED = "abandoned"  # its worker lost the task's lease (crashed or too slow)


class Attempt(TraceStamped):
    """One agent's try at one task. Rows are written by the pipeline; the agent's work itself
    changes no task status (the arena runs two agents on one task)."""

    Outcome = AttemptOutcome

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="work_attempts")
    profile = models.ForeignKey(AgentProfile, on_delete=models.PROTECT, related_name="attempts")
    number = models.PositiveSmallIntegerField(help_text="1 for the task's first attempt by this profile.")
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.RUNNING)
    error_class = models.CharField(max_length=100, blank=True)
    detail = models.TextField(blank=True, help_text="Why it failed, was rejected or declined.")
    plan = models.JSONField(null=True, blank=True)
    verdict = models.JSONField(null=True, blank=True, help_text="The review's verdict.")
    summary = models.TextField(blank=True)
    model_cost_cents = models.DecimalField(**COST, default=0, help_text="The sum of its ledger rows.")
    compute_ms = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["task", "number", "id"]
        constraints = [
            models.UniqueConstraint(fields=["task", "profile", "number"], name="agency_attempt_unique_number"),
            models.CheckConstraint(condition=Q(number__gte=1), name="agency_attempt_number_from_one"),
            models.CheckConstraint(condition=Q(outcome__in=AttemptOutcome.values), name="agency_attempt_known_outcome"),
            models.CheckConstraint(
                condition=Q(outcome=AttemptOutcome.RUNNING, finished_at__isnull=True)
                | (~Q(outcome=AttemptOutcome.RUNNING) & Q(finished_at__isnull=False)),
                name="agency_attempt_finished_iff_done",
            ),
        ]

    def __str__(self) -> str:
        return f"Task #{self.task_id} attempt {self.number} by {self.profile_id} ({self.outcome})"


class Experience(TraceStamped):
    """An approved deliverable, kept so that planning later tasks of its domain can learn from it."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="experiences")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="experiences")
    title = models.CharField(max_length=200)
    summary = models.TextField()
    terms = models.TextField(editable=False, help_text="Index terms of title and summary, for retrieval.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task"], name="agency_experience_one_per_task")]

    def __str__(self) -> str:
        return f"{self.domain}: {self.title}"


class TrainingExample(TraceStamped):
    """Approved work of a cloud ("teacher") model: the exact messages sent and the answer, for
    distilling into a local model later."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="training_examples")
    attempt = models.ForeignKey(Attempt, on_delete=models.CASCADE, related_name="training_examples")
    domain = models.ForeignKey(Domain, on_delete=models.PROTECT, related_name="training_examples")
    teacher = models.ForeignKey(ModelDeployment, on_delete=models.PROTECT, related_name="training_examples")
    purpose = models.CharField(max_length=10)
    messages = models.JSONField()
    response = models.TextField()
    rating = models.PositiveSmallIntegerField(null=True, blank=True, help_text="The review's score, 1 to 5.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["attempt", "purpose"], name="agency_trainingexample_one_per_step"),
        ]

    def __str__(self) -> str:
        return f"{self.domain} example from task #{self.task_id} ({self.purpose})"
