"""Competitions between agent profiles, their results, and the standings they add up to
(docs/arena.md).

Rows here link to the core's (a result to its `Attempt`, and through it to its ledger rows);
the core never links back. Money is cents: revenue whole, costs and profit exact decimals
(model costs are fractions of a cent).
"""

import os
import uuid

from django.db import models
from django.db.models import F, Q

from agency.models import AgentProfile, Attempt, Domain, RoutingChange, Task
from agency.models.gateway import COST
from agency.models.tasks import private_storage
from tracing.models import TraceStamped


class CompetitionStatus(models.TextChoices):
    RUNNING = "running"
    DECIDED = "decided"  # a side passed the gate and won
    NO_WINNER = "no_winner"  # no side passed: the task went to the operators (live) or nothing (replay)


class CompetitionMode(models.TextChoices):
    LIVE = "live"  # the competition works the task: the winner's deliverable is the client's
    REPLAY = "replay"  # the task was done already: results and standings only, the task stays as it is


class WinReason(models.TextChoices):
    GATE = "gate"  # only the winner passed the quality gate
    PROFIT = "profit"  # both passed; the winner made more
    COST = "cost"  # equal profit; the winner cost less
    INCUMBENT = "incumbent"  # equal profit and cost; the profile routed at the start stays
    NONE_PASSED = "none_passed"


DECISIVE = (WinReason.GATE, WinReason.PROFIT)
TIED = (WinReason.COST, WinReason.INCUMBENT)


class Competition(TraceStamped):
    """Two agent profiles on one task at once. One competition per task and pair of profiles,
    whichever side each is on (`pair_key` is the two profile ids, smaller first)."""

    Status = CompetitionStatus
    Mode = CompetitionMode
    Reason = WinReason

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="competitions")
    domain = models.ForeignKey(Domain, on_delete=models.PROTECT, related_name="+", editable=False)
    profile_a = models.ForeignKey(AgentProfile, on_delete=models.PROTECT, related_name="+")
    profile_b = models.ForeignKey(AgentProfile, on_delete=models.PROTECT, related_name="+")
    pair_key = models.CharField(max_length=41, editable=False)
    incumbent = models.ForeignKey(
        AgentProfile, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The profile routed for the task's domain when the competition started (wins ties).",
    )  # fmt: skip
    mode = models.CharField(max_length=10, choices=Mode.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    winner = models.ForeignKey(AgentProfile, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=12, choices=Reason.choices, blank=True)
    started_by = models.CharField(max_length=100)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="arena_competition_status"),
            models.Index(fields=["domain", "pair_key", "decided_at"], name="arena_competition_pair"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["task", "pair_key"], name="arena_competition_one_per_task_pair"),
            models.CheckConstraint(condition=~Q(profile_a=F("profile_b")), name="arena_competition_two_profiles"),
            models.CheckConstraint(condition=Q(status__in=CompetitionStatus.values), name="arena_competition_status"),
            models.CheckConstraint(condition=Q(mode__in=CompetitionMode.values), name="arena_competition_mode"),
            models.CheckConstraint(
                condition=Q(status=CompetitionStatus.DECIDED, winner__isnull=False)
                | (~Q(status=CompetitionStatus.DECIDED) & Q(winner__isnull=True)),
                name="arena_competition_winner_iff_decided",
            ),
            models.CheckConstraint(
                condition=Q(status=CompetitionStatus.RUNNING, decided_at__isnull=True)
                | (~Q(status=CompetitionStatus.RUNNING) & Q(decided_at__isnull=False)),
                name="arena_competition_decided_at_iff_done",
            ),
        ]

    def __str__(self) -> str:
        return f"Competition #{self.pk} on task #{self.task_id}"

    @property
    def holder(self) -> str:
        """The task's lease owner while a live competition works it."""
        return f"arena competition {self.pk}"


def pair_key(first_id: int, second_id: int) -> str:
    low, high = sorted((first_id, second_id))
    return f"{low}:{high}"


class Side(models.TextChoices):
    A = "a"
    B = "b"


class ResultState(models.TextChoices):
    RUNNING = "running"
    FINISHED = "finished"


class ArenaResult(TraceStamped):
    """One side of a competition: its attempt (and through it the ledger rows of its model calls)
    and what it earned. Created when the side starts, finished once."""

    Side = Side
    State = ResultState

    competition = models.ForeignKey(Competition, on_delete=models.CASCADE, related_name="results")
    side = models.CharField(max_length=1, choices=Side.choices)
    profile = models.ForeignKey(AgentProfile, on_delete=models.PROTECT, related_name="+")
    attempt = models.OneToOneField(Attempt, on_delete=models.PROTECT, related_name="arena_result")
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    passed_gate = models.BooleanField(default=False)
    revenue_cents = models.PositiveIntegerField(default=0, help_text="The task's price if the side passed, else 0.")
    model_cost_cents = models.DecimalField(**COST, default=0, help_text="The sum of its attempt's ledger rows.")
    compute_cost_cents = models.DecimalField(**COST, default=0, help_text="Its compute seconds times the sandbox rate.")
    profit_cents = models.DecimalField(**COST, default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    summary = models.TextField(blank=True)
    response = models.TextField(blank=True, help_text="The deliverable's text (training exports).")
    error = models.TextField(blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["competition", "side"]
        constraints = [
            models.UniqueConstraint(fields=["competition", "side"], name="arena_result_one_per_side"),
            models.UniqueConstraint(fields=["competition", "profile"], name="arena_result_one_per_profile"),
            models.CheckConstraint(condition=Q(side__in=Side.values), name="arena_result_known_side"),
            models.CheckConstraint(condition=Q(state__in=ResultState.values), name="arena_result_known_state"),
            models.CheckConstraint(
                condition=Q(state=ResultState.RUNNING, finished_at__isnull=True)
                | Q(state=ResultState.FINISHED, finished_at__isnull=False),
                name="arena_result_finished_at_iff_finished",
            ),
        ]

    def __str__(self) -> str:
        return f"Competition #{self.competition_id} side {self.side}"


def arena_file_upload_to(instance, filename: str) -> str:
    return f"arena/{uuid.uuid4().hex}{os.path.splitext(filename)[1].lower()}"


class ArenaFile(models.Model):
    """A file one side produced; the winner's are copied into the task's deliverables."""

    result = models.ForeignKey(ArenaResult, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=200)
    file = models.FileField(upload_to=arena_file_upload_to, storage=private_storage, max_length=300)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["result", "id"]  # as produced; names need not be unique (a deliverable's are not)

    def __str__(self) -> str:
        return self.name


class PromotionState(models.TextChoices):
    WATCHING = "watching"  # promotes the better profile once the evidence is in
    PROMOTED = "promoted"  # promoted a profile into routing
    HELD = "held"  # an operator reverted a promotion: no automatic promotion until released


class PairStanding(models.Model):
    """What one pair of profiles' competitions in one domain add up to, recomputed from the decided
    competitions after each decision. Counts are from `first`'s side (the smaller profile id):
    a duel is decisive when one side won by the gate or by profit, tied when profits were equal."""

    Promotion = PromotionState

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="+")
    first = models.ForeignKey(AgentProfile, on_delete=models.CASCADE, related_name="+")
    second = models.ForeignKey(AgentProfile, on_delete=models.CASCADE, related_name="+")
    first_wins = models.PositiveIntegerField(default=0)
    second_wins = models.PositiveIntegerField(default=0)
    ties = models.PositiveIntegerField(default=0)
    none_passed = models.PositiveIntegerField(default=0)
    win_rate_low = models.FloatField(null=True, blank=True, help_text="Wilson 95 % interval of first's win rate.")
    win_rate_high = models.FloatField(null=True, blank=True)
    profit_diff_mean_cents = models.DecimalField(**COST, null=True, blank=True, help_text="first minus second.")
    profit_diff_low_cents = models.FloatField(null=True, blank=True, help_text="Bootstrap 95 % interval.")
    profit_diff_high_cents = models.FloatField(null=True, blank=True)
    promotion = models.CharField(max_length=10, choices=Promotion.choices, default=Promotion.WATCHING)
    promotion_change = models.ForeignKey(
        RoutingChange, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The routing change of the last promotion.",
    )  # fmt: skip
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["domain", "first", "second"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "first", "second"], name="arena_standing_one_per_pair_domain"),
            models.CheckConstraint(condition=Q(first__lt=F("second")), name="arena_standing_pair_in_order"),
            models.CheckConstraint(condition=Q(promotion__in=PromotionState.values), name="arena_standing_promotion"),
        ]

    def __str__(self) -> str:
        return f"{self.domain_id}: {self.first_id} vs {self.second_id}"

    @property
    def decisive(self) -> int:
        return self.first_wins + self.second_wins
