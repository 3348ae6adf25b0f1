"""Competitions end to end on the database: the pipeline's hook, both sides, the join, the task's
outcome, and what a redelivered message changes (nothing) (docs/arena.md)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from agency.models import AgentProfile, Attempt, Deliverable, ModelCall, Task
from agency.pipeline import LeaseLost, task_work_run
from arena.models import ArenaFile, ArenaResult, Competition, PairStanding
from arena.services.competitions import (
    CompetitionRefused,
    _side_finish,
    competition_decide,
    competition_side_run,
    competition_start,
    competition_wanted,
    competitions_resume,
    side_money,
)
from escalations.models import Escalation
from tests.agency.factories import TaskFactory
from tests.agency.pipeline_setup import paid_task
from tests.arena.factories import CompetitionFactory, ProfileFactory

pytestmark = pytest.mark.django_db

D = Decimal


def valuable_csv_task() -> Task:
    return paid_task(complexity="complex")  # data analysis 15000 x 2: high value


# --- Money ----------------------------------------------------------------------------------------


def test_profit_is_the_price_less_ledger_and_compute_cost_to_the_fraction_of_a_cent(settings):
    settings.ARENA_COMPUTE_CENTS_PER_SECOND = D("0.0014")
    money = side_money(passed=True, price_cents=15000, model_cost=D("1.5001234567"), compute_ms=1500)
    assert money == {
        "revenue_cents": 15000,
        "model_cost_cents": D("1.5001234567"),
        "compute_cost_cents": D("0.0021"),
        "profit_cents": D("14998.4977765433"),
    }


def test_a_side_that_failed_the_gate_earns_nothing_and_still_pays_its_costs(settings):
    settings.ARENA_COMPUTE_CENTS_PER_SECOND = D("0.5")
    money = side_money(passed=False, price_cents=15000, model_cost=D("0.0000000001"), compute_ms=3)
    assert money["revenue_cents"] == 0
    assert money["profit_cents"] == D("-0.0015000001")


def test_the_results_costs_are_the_sums_of_their_ledger_rows(settings, run_commits, llm_incumbent):
    settings.ARENA_COMPUTE_CENTS_PER_SECOND = D("0")  # wall-clock time would make profits vary
    task = valuable_csv_task()
    with run_commits():
        assert task_work_run(task_id=task.pk, worker="w1") == "arena"
    llm_side = ArenaResult.objects.get(competition__task=task, profile=llm_incumbent)
    ledger = ModelCall.objects.filter(agent_attempt=llm_side.attempt)
    assert ledger.count() == 3  # plan, work, review
    # 3 calls x (10 tokens in x 250 ¢/1M + 5 out x 1000 ¢/1M) = 3 x 0.0075 ¢
    assert ledger.aggregate(total=Sum("cost_cents"))["total"] == D("0.0225")
    assert (llm_side.model_cost_cents, llm_side.profit_cents) == (D("0.0225"), D("29999.9775"))
    baseline_side = ArenaResult.objects.get(competition__task=task, profile__name="baseline")
    assert (baseline_side.model_cost_cents, baseline_side.profit_cents) == (0, 30000)


# --- The pipeline's hook --------------------------------------------------------------------------


def test_a_high_value_task_competes_and_the_more_profitable_side_delivers(settings, run_commits, llm_incumbent):
    settings.ARENA_COMPUTE_CENTS_PER_SECOND = D("0")
    task = valuable_csv_task()
    with run_commits():
        assert task_work_run(task_id=task.pk, worker="w1") == "arena"
    competition = Competition.objects.get(task=task)
    baseline = AgentProfile.objects.get(name="baseline")
    assert (competition.mode, competition.status, competition.reason) == ("live", "decided", "profit")
    assert (competition.profile_a, competition.profile_b, competition.incumbent) == (
        llm_incumbent, baseline, llm_incumbent)  # fmt: skip
    assert competition.winner == baseline  # both passed; the baseline made no model calls
    task.refresh_from_db()
    assert (task.status, task.lease_owner, task.attempts) == ("completed", "", 0)
    winner_files = ArenaFile.objects.filter(result__competition=competition, result__profile=baseline)
    delivered = Deliverable.objects.filter(task=task)
    assert sorted(delivered.values_list("sha256", flat=True)) == sorted(winner_files.values_list("sha256", flat=True))
    assert sorted(delivered.values_list("name", flat=True)) == ["chart.png", "report.html"]
    assert list(task.events.values_list("to_status", flat=True).order_by("pk")) == [
        "pending", "paid", "planning", "processing", "reviewing", "completed"]  # fmt: skip
    assert set(Attempt.objects.filter(task=task).values_list("profile__name", "outcome")) == {
        ("llm", "approved"), ("baseline", "approved")}  # fmt: skip


def test_with_one_active_profile_a_high_value_task_takes_the_single_agent_path(run_commits):
    task = valuable_csv_task()
    with run_commits():
        assert task_work_run(task_id=task.pk, worker="w1") == "completed"
    assert not Competition.objects.exists()


def test_ordinary_tasks_compete_only_when_sampled(settings, run_commits):
    ProfileFactory(name="second-baseline")
    settings.ARENA_SAMPLE_RATE = 0
    task = paid_task()
    with run_commits():
        assert task_work_run(task_id=task.pk, worker="w1") == "completed"
    settings.ARENA_SAMPLE_RATE = 1
    task = paid_task(title="Another")
    with run_commits():
        assert task_work_run(task_id=task.pk, worker="w1") == "arena"
    assert Competition.objects.get().task == task


def test_the_sample_is_a_stable_share_of_task_ids(settings):
    settings.ARENA_SAMPLE_RATE = 0.25
    tasks = [Task(pk=pk, price_cents=100) for pk in range(1, 2001)]
    picked = [t.pk for t in tasks if competition_wanted(task=t)]
    assert 0.21 < len(picked) / len(tasks) < 0.29
    assert picked == [t.pk for t in tasks if competition_wanted(task=t)]


def test_no_side_passing_means_no_winner_and_an_escalation(run_commits):
    ProfileFactory(name="second-baseline")  # baselines decline text work
    task = paid_task("legal", "consulting_agreement.txt", title="Review a contract", complexity="complex")
    with run_commits():
        assert task_work_run(task_id=task.pk, worker="w1") == "arena"
    competition = Competition.objects.get(task=task)
    assert (competition.status, competition.winner, competition.reason) == ("no_winner", None, "none_passed")
    escalation = Escalation.objects.get(task=task)
    assert escalation.reason == "arena_no_winner" and "baseline" in escalation.detail
    task.refresh_from_db()
    assert (task.status, task.lease_owner) == ("escalated", "")
    assert not Deliverable.objects.filter(task=task).exists()
    assert not ArenaFile.objects.exists()


def test_after_an_arena_escalation_a_retry_takes_the_single_agent_path(run_commits):
    ProfileFactory(name="second-baseline")
    task = paid_task("legal", "consulting_agreement.txt", title="Review a contract", complexity="complex")
    with run_commits():
        task_work_run(task_id=task.pk, worker="w1")
    Task.objects.filter(pk=task.pk).update(status="processing")  # as an operator's retry leaves it
    Task.objects.filter(pk=task.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    with run_commits():
        assert task_work_run(task_id=task.pk, worker="w2") == "escalated"
    assert Competition.objects.filter(task=task).count() == 1
    assert Attempt.objects.filter(task=task, worker="w2").count() == 1


# --- Redelivery and silent sides -----------------------------------------------------------------


def test_a_redelivered_join_or_side_changes_nothing(settings, run_commits, llm_incumbent):
    settings.ARENA_COMPUTE_CENTS_PER_SECOND = D("0")
    task = valuable_csv_task()
    with run_commits():
        task_work_run(task_id=task.pk, worker="w1")
    competition = Competition.objects.get(task=task)
    with run_commits():
        assert competition_decide(competition_id=competition.pk) == "already decided"
        assert competition_side_run(competition_id=competition.pk, side="a", worker="w9") == "already decided"
    assert ArenaResult.objects.filter(competition=competition).count() == 2
    assert Deliverable.objects.filter(task=task).count() == 2
    assert task.events.filter(to_status="completed").count() == 1
    assert PairStanding.objects.get().first_wins + PairStanding.objects.get().second_wins == 1


def test_the_join_waits_for_both_sides(run_commits):
    competition = CompetitionFactory(task=TaskFactory(status="completed", domain=paid_task().domain))
    assert competition_side_run(competition_id=competition.pk, side="a", worker="w1") == "finished"
    assert competition_decide(competition_id=competition.pk) == "waiting"
    competition.refresh_from_db()
    assert competition.status == "running"


def test_a_side_running_elsewhere_is_not_run_twice():
    competition = CompetitionFactory()
    first = _claim(competition, "a")
    assert competition_side_run(competition_id=competition.pk, side="a", worker="w2") == "not claimed"
    assert ArenaResult.objects.get(competition=competition, side="a").attempt == first.attempt
    assert Attempt.objects.filter(task=competition.task).count() == 1


def test_a_silent_side_is_run_again_after_its_timeout_and_its_old_attempt_abandoned(settings):
    settings.ARENA_SIDE_TIMEOUT_SECONDS = 60
    task = paid_task()
    Task.objects.filter(pk=task.pk).update(status="completed")
    competition = CompetitionFactory(task=Task.objects.get(pk=task.pk))
    silent = _claim(competition, "a", started_at=timezone.now() - timedelta(seconds=61))
    assert competition_side_run(competition_id=competition.pk, side="a", worker="w2") == "finished"
    result = ArenaResult.objects.get(competition=competition, side="a")
    assert result.state == "finished" and result.attempt != silent.attempt
    assert Attempt.objects.get(pk=silent.attempt_id).outcome == "abandoned"


def test_a_side_finishing_after_it_was_taken_over_keeps_nothing(settings):
    settings.ARENA_SIDE_TIMEOUT_SECONDS = 60
    competition = CompetitionFactory()
    slow = _claim(competition, "a", started_at=timezone.now() - timedelta(seconds=61))
    assert competition_side_run(competition_id=competition.pk, side="a", worker="w2") == "finished"
    from agency.agents.base import AgentOutput, Produced

    late = AgentOutput(outcome="approved", files=[Produced("late.md", b"late", "text/markdown")], summary="late")
    with pytest.raises(LeaseLost):
        _side_finish(result=slow, output=late, compute_ms=5)
    assert not ArenaFile.objects.filter(name="late.md").exists()


def test_the_cycle_wakes_competitions_silent_for_longer_than_a_sides_timeout(settings, run_commits):
    settings.ARENA_SIDE_TIMEOUT_SECONDS = 60
    domain = paid_task().domain
    fresh = CompetitionFactory(task=TaskFactory(status="completed", domain=domain))
    stale = CompetitionFactory(task=TaskFactory(status="completed", domain=domain))
    Competition.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    with run_commits():
        assert competitions_resume() == {"competitions_resumed": 1}
    assert Competition.objects.get(pk=stale.pk).status == "no_winner"  # baselines with no table to report on
    assert Competition.objects.get(pk=fresh.pk).status == "running"


def test_the_pipeline_wakes_a_live_competition_whose_lease_ran_out(django_capture_on_commit_callbacks):
    ProfileFactory(name="second-baseline")
    task = valuable_csv_task()
    with django_capture_on_commit_callbacks(execute=False):  # the sides' messages are lost
        assert task_work_run(task_id=task.pk, worker="w1") == "arena"
    competition = Competition.objects.get(task=task)
    assert Task.objects.get(pk=task.pk).lease_owner == competition.holder
    Task.objects.filter(pk=task.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert task_work_run(task_id=task.pk, worker="w2") == "arena"
    competition.refresh_from_db()
    assert competition.status == "decided"
    assert Task.objects.get(pk=task.pk).status == "completed"
    assert Competition.objects.filter(task=task).count() == 1


# --- Starting by hand -----------------------------------------------------------------------------


def test_an_operator_starts_a_live_competition_on_a_paid_task(settings, run_commits):
    settings.ARENA_COMPUTE_CENTS_PER_SECOND = D("0")
    task = paid_task()
    challenger = ProfileFactory()
    baseline = AgentProfile.objects.get(name="baseline")
    with run_commits():
        competition = competition_start(task=task, profile_a=challenger, profile_b=baseline, actor="op")
    competition.refresh_from_db()
    assert (competition.mode, competition.status, competition.incumbent) == ("live", "decided", baseline)
    assert (competition.winner, competition.reason) == (baseline, "incumbent")  # two baselines: the same report
    assert Task.objects.get(pk=task.pk).status == "completed"


def test_a_replay_on_a_completed_task_leaves_the_task_as_it_is(run_commits):
    task = paid_task()
    with run_commits():
        task_work_run(task_id=task.pk, worker="w1")
    delivered = set(Deliverable.objects.filter(task=task).values_list("pk", flat=True))
    task.refresh_from_db()
    with run_commits():
        competition = competition_start(
            task=task, profile_a=AgentProfile.objects.get(name="baseline"), profile_b=ProfileFactory(), actor="op"
        )
    competition.refresh_from_db()
    assert (competition.mode, competition.status) == ("replay", "decided")
    assert set(Deliverable.objects.filter(task=task).values_list("pk", flat=True)) == delivered
    assert task.events.filter(to_status="completed").count() == 1
    assert PairStanding.objects.count() == 1


def test_starting_refuses_what_cannot_compete():
    task = paid_task()
    baseline = AgentProfile.objects.get(name="baseline")
    other = ProfileFactory()
    with pytest.raises(CompetitionRefused, match="two different"):
        competition_start(task=task, profile_a=baseline, profile_b=baseline, actor="op")
    with pytest.raises(CompetitionRefused, match="inactive"):
        competition_start(task=task, profile_a=baseline, profile_b=ProfileFactory(active=False), actor="op")
    legal_only = ProfileFactory(domain=_legal())
    with pytest.raises(CompetitionRefused, match="does not work"):
        competition_start(task=task, profile_a=baseline, profile_b=legal_only, actor="op")
    in_flight = TaskFactory(status="processing", domain=task.domain)
    with pytest.raises(CompetitionRefused, match="only a paid task") as refused:
        competition_start(task=in_flight, profile_a=baseline, profile_b=other, actor="op")
    assert refused.value.existing_id is None  # no competition to point at
    assert not Competition.objects.exists()


def test_a_pair_meets_once_per_task_whichever_side_each_takes():
    task = TaskFactory(status="completed", domain=paid_task().domain)
    baseline, other = AgentProfile.objects.get(name="baseline"), ProfileFactory()
    first = competition_start(task=task, profile_a=baseline, profile_b=other, actor="op")
    with pytest.raises(CompetitionRefused, match="already met") as refused:
        competition_start(task=task, profile_a=other, profile_b=baseline, actor="op")
    assert refused.value.existing_id == first.pk


def test_a_paid_task_taken_by_the_pipeline_first_is_refused(run_commits):
    task = paid_task()
    with run_commits():
        task_work_run(task_id=task.pk, worker="w1")
    stale = Task.objects.get(pk=task.pk)
    stale.status = "paid"  # what the operator's page still showed
    with pytest.raises(CompetitionRefused, match="cannot compete now"):
        competition_start(
            task=stale, profile_a=AgentProfile.objects.get(name="baseline"), profile_b=ProfileFactory(), actor="op"
        )
    assert not Competition.objects.exists()


def _legal():
    from tests.agency.factories import domain

    return domain("legal")


def _claim(competition: Competition, side: str, started_at=None) -> ArenaResult:
    """A side claimed by a worker that is still running it (or went silent at `started_at`)."""
    profile = competition.profile_a if side == "a" else competition.profile_b
    attempt = Attempt.objects.create(task=competition.task, profile=profile, number=1, worker="w1")
    return ArenaResult.objects.create(
        competition=competition, side=side, profile=profile, attempt=attempt, started_at=started_at or timezone.now()
    )
