"""Arena rows placed directly (test set-up only; the product goes through `arena.services`)."""

from decimal import Decimal

import factory
from django.utils import timezone

from agency.models import AgentProfile, Attempt
from arena.models import ArenaResult, Competition, pair_key
from tests.agency.factories import TaskFactory


class ProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AgentProfile

    name = factory.Sequence(lambda n: f"profile-{n}")
    kind = AgentProfile.Kind.BASELINE
    priority = factory.Sequence(lambda n: 2000 + n)  # behind the seeded baseline (1000)


class CompetitionFactory(factory.django.DjangoModelFactory):
    """A competition on a completed task (replay), decided or running as the test says."""

    class Meta:
        model = Competition

    task = factory.SubFactory(TaskFactory, status="completed")
    domain = factory.SelfAttribute("task.domain")
    profile_a = factory.SubFactory(ProfileFactory)
    profile_b = factory.SubFactory(ProfileFactory)
    pair_key = factory.LazyAttribute(lambda c: pair_key(c.profile_a.pk, c.profile_b.pk))
    mode = Competition.Mode.REPLAY
    started_by = "test"


def result_add(
    competition: Competition,
    side: str,
    *,
    passed: bool,
    revenue: int = 0,
    model_cost: str = "0",
    compute_cost: str = "0",
    response: str = "",
    summary: str = "",
) -> ArenaResult:
    """A finished side with its attempt; profit is revenue less both costs."""
    profile = competition.profile_a if side == "a" else competition.profile_b
    number = Attempt.objects.filter(task=competition.task, profile=profile).count() + 1
    now = timezone.now()
    attempt = Attempt.objects.create(
        task=competition.task,
        profile=profile,
        number=number,
        outcome=Attempt.Outcome.APPROVED if passed else Attempt.Outcome.ERROR,
        finished_at=now,
    )
    model, compute = Decimal(model_cost), Decimal(compute_cost)
    return ArenaResult.objects.create(
        competition=competition,
        side=side,
        profile=profile,
        attempt=attempt,
        state=ArenaResult.State.FINISHED,
        passed_gate=passed,
        revenue_cents=revenue,
        model_cost_cents=model,
        compute_cost_cents=compute,
        profit_cents=revenue - model - compute,
        response=response,
        summary=summary,
        started_at=now,
        finished_at=now,
    )


def duel(competition: Competition, *, winner: AgentProfile | None, reason: str) -> Competition:
    """Mark `competition` decided as the join would (the test names the outcome)."""
    competition.status = Competition.Status.DECIDED if winner else Competition.Status.NO_WINNER
    competition.winner = winner
    competition.reason = reason
    competition.decided_at = timezone.now()
    competition.save()
    return competition
