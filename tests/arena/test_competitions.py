"""Competitions end to end on the database: the pipeline's hook, both sides, the join, the task's
outcome, and what a redelivered message changes (nothing) (docs/arena.md)."""

import hashlib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError
from django.db.models import Sum
from django.utils import timezone

from agency.agents.base import AgentOutput, Produced
from agency.models import AgentProfile, Attempt, Deliverable, Experience, ModelCall, Provider, Task, TrainingExample
from agency.pipeline import LeaseLost, task_work_run
from arena.models import ArenaFile, ArenaResult, Competition, PairStanding
from arena.services.competitions import (
    CompetitionRefused,
    _side_finish,
    _side_take_over,
    competition_decide,
    competition_side_run,
    competition_start,
    competition_wanted,
    competitions_resume,
    response_text,
    side_money,
    task_compete,
)
from escalations.models import Escalation
from tests.agency.factories import TaskFactory
from tests.agency.fake_openai import ok
from tests.agency.gateway_setup import deployment_at, route_of
from tests.agency.pipeline_setup import APPROVED, BY_REGION, paid_task
from tests.arena.factories import CompetitionFactory, ProfileFactory, result_add

pytestmark = pytest.mark.django_db

D = Decimal


def valuable_csv_task() -> Task:
    return paid_task(complexity="complex")  # data analysis 15000 x 2: high value


# --- Money ----------------------------------------------------------------------------------------


def test_profit_is_the_price_less_ledger_and_compute_cost_to_the_fraction_of_a_cent(settings):
    settings.COMPUTE_CENTS_PER_SECOND = D("0.0014")
    money = side_money(passed=True, price_cents=15000, model_cost=D("1.5001234567"), compute_ms=1500)
    assert money == {
        "revenue_cents": 15000,
        "model_cost_cents": D("1.5001234567"),
        "compute_cost_cents": D("0.0021"),
        "profit_cents": D("14998.4977765433"),
    }


def test_a_side_that_failed_the_gate_earns_nothing_and_still_pays_its_costs(settings):
    settings.COMPUTE_CENTS_PER_SECOND = D("0.5")
    money = side_money(passed=False, price_cents=15000, model_cost=D("0.0000000001"), compute_ms=3)
    assert money["revenue_cents"] == 0
    assert money["profit_cents"] == D("-0.0015000001")


def test_the_results_costs_are_the_sums_of_their_ledger_rows(settings, run_commits, llm_incumbent):
    settings.COMPUTE_CENTS_PER_SECOND = D("0")  # wall-clock time would make profits vary
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
    settings.COMPUTE_CENTS_PER_SECOND = D("0")
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
    assert (task.status, task.lease_owner, task.lease_until) == ("escalated", "", None)
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


def test_another_tasks_live_competition_neither_resumes_nor_blocks_this_one(run_commits):
    ProfileFactory(name="second-baseline")
    elsewhere = _live(paid_task(title="Another"))  # running, its sides' messages lost
    task = valuable_csv_task()
    with run_commits():
        assert task_work_run(task_id=task.pk, worker="w1") == "arena"
    assert Competition.objects.get(task=task).status == "decided"
    assert Competition.objects.get(pk=elsewhere.pk).status == "running"
    assert Task.objects.get(pk=elsewhere.task_id).lease_owner == elsewhere.holder


def test_with_no_active_profile_a_high_value_task_is_escalated_without_a_competition(run_commits):
    task = valuable_csv_task()
    AgentProfile.objects.update(active=False)
    with run_commits():
        assert task_work_run(task_id=task.pk, worker="w1") == "escalated"
    assert not Competition.objects.exists()


def test_a_competition_the_pipeline_starts_holds_the_lease_for_a_sides_timeout(
    settings, django_capture_on_commit_callbacks
):
    settings.ARENA_SIDE_TIMEOUT_SECONDS = 3600  # longer than the pipeline's own lease (TASK_LEASE_SECONDS, 600)
    ProfileFactory(name="second-baseline")
    task = valuable_csv_task()
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=False):
        assert task_work_run(task_id=task.pk, worker="w1") == "arena"
    task.refresh_from_db()
    assert task.lease_owner == Competition.objects.get(task=task).holder
    assert before + timedelta(seconds=3600) <= task.lease_until <= timezone.now() + timedelta(seconds=3600)


def test_a_worker_waking_a_competition_hands_it_the_lease_for_a_sides_timeout(
    settings, django_capture_on_commit_callbacks
):
    settings.ARENA_SIDE_TIMEOUT_SECONDS = 3600
    competition = _live_with_lapsed_lease(django_capture_on_commit_callbacks)
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=False):  # the sides' messages are lost again
        assert task_work_run(task_id=competition.task_id, worker="w2") == "arena"
    task = Task.objects.get(pk=competition.task_id)
    assert task.lease_owner == competition.holder
    assert before + timedelta(seconds=3600) <= task.lease_until <= timezone.now() + timedelta(seconds=3600)


def test_a_worker_without_the_lease_cannot_wake_the_competition(django_capture_on_commit_callbacks):
    competition = _live_with_lapsed_lease(django_capture_on_commit_callbacks)
    Task.objects.filter(pk=competition.task_id).update(lease_owner="w3")  # w3 took the task first
    with pytest.raises(LeaseLost):
        task_compete(task=Task.objects.get(pk=competition.task_id), worker="w2")
    assert Task.objects.get(pk=competition.task_id).lease_owner == "w3"


def test_waking_a_competition_takes_only_its_own_tasks_lease(django_capture_on_commit_callbacks):
    competition = _live_with_lapsed_lease(django_capture_on_commit_callbacks)
    other = paid_task(title="Another")
    Task.objects.filter(pk=other.pk).update(status="processing", lease_owner="w2")
    Task.objects.filter(pk=competition.task_id).update(lease_owner="w2")  # w2 took the lapsed task over
    with django_capture_on_commit_callbacks(execute=False):
        assert task_compete(task=Task.objects.get(pk=competition.task_id), worker="w2") == "arena"
    assert Task.objects.get(pk=competition.task_id).lease_owner == competition.holder
    assert Task.objects.get(pk=other.pk).lease_owner == "w2"


# --- Redelivery and silent sides -----------------------------------------------------------------


def test_a_redelivered_join_or_side_changes_nothing(settings, run_commits, llm_incumbent):
    settings.COMPUTE_CENTS_PER_SECOND = D("0")
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
    old = Attempt.objects.get(pk=silent.attempt_id)
    assert (old.outcome, old.detail) == ("abandoned", "Its arena side went silent.")
    assert old.finished_at is not None


def test_a_side_finishing_after_it_was_taken_over_keeps_nothing(settings):
    settings.ARENA_SIDE_TIMEOUT_SECONDS = 60
    competition = CompetitionFactory()
    slow = _claim(competition, "a", started_at=timezone.now() - timedelta(seconds=61))
    assert competition_side_run(competition_id=competition.pk, side="a", worker="w2") == "finished"
    late = AgentOutput(outcome="approved", files=[Produced("late.md", b"late", "text/markdown")], summary="late")
    with pytest.raises(LeaseLost):
        _side_finish(result=slow, output=late, compute_ms=5)
    assert not ArenaFile.objects.filter(name="late.md").exists()


def test_a_sides_latency_is_its_agents_wall_clock_time_in_milliseconds(fast_gateway, fake_openai):
    llm = _llm(fake_openai, *_table_answers(delay=0.3))  # the plan's answer takes 0.3 s
    competition = _replay_of_table_task(profile_a=llm)
    assert competition_side_run(competition_id=competition.pk, side="a", worker="w1") == "finished"
    result = ArenaResult.objects.get(competition=competition, side="a")
    assert result.passed_gate
    assert 300 <= result.latency_ms < 5000


def test_a_side_redelivered_after_it_finished_still_brings_the_join(run_commits):
    competition = _replay_of_table_task()
    for side in ("a", "b"):  # both finish; their joins' messages are lost
        assert competition_side_run(competition_id=competition.pk, side=side, worker="w1") == "finished"
    assert Competition.objects.get(pk=competition.pk).status == "running"
    with run_commits():
        assert competition_side_run(competition_id=competition.pk, side="a", worker="w2") == "not claimed"
    assert Competition.objects.get(pk=competition.pk).status == "decided"


def test_a_side_of_another_competition_does_not_hold_this_ones():
    elsewhere = _claim(CompetitionFactory(), "a")  # running, fresh
    competition = CompetitionFactory(task=elsewhere.competition.task)
    assert competition_side_run(competition_id=competition.pk, side="a", worker="w2") == "finished"


def test_a_side_taken_over_starts_its_clock_again(settings):
    settings.ARENA_SIDE_TIMEOUT_SECONDS = 60
    competition = CompetitionFactory()
    _claim(competition, "a", started_at=timezone.now() - timedelta(seconds=61))
    before = timezone.now()
    taken = _side_take_over(
        existing=ArenaResult.objects.get(competition=competition, side="a"), profile=competition.profile_a, worker="w2"
    )
    assert ArenaResult.objects.get(pk=taken.pk).started_at >= before


def test_of_two_workers_taking_over_a_silent_side_only_the_first_runs_it(settings):
    settings.ARENA_SIDE_TIMEOUT_SECONDS = 60
    competition = CompetitionFactory()
    silent = _claim(competition, "a", started_at=timezone.now() - timedelta(seconds=61))
    seen_by_second = ArenaResult.objects.get(pk=silent.pk)  # read before the first took it over
    first = _side_take_over(existing=silent, profile=competition.profile_a, worker="w2")
    assert _side_take_over(existing=seen_by_second, profile=competition.profile_a, worker="w3") is None
    assert ArenaResult.objects.get(pk=silent.pk).attempt == first.attempt
    assert Attempt.objects.filter(task=competition.task, worker="w3", outcome="running").count() == 0


def test_a_silent_side_that_finished_before_its_takeover_is_not_taken_over(settings):
    settings.ARENA_SIDE_TIMEOUT_SECONDS = 60
    competition = CompetitionFactory()
    slow = _claim(competition, "a", started_at=timezone.now() - timedelta(seconds=61))
    seen_by_taker = ArenaResult.objects.get(pk=slow.pk)
    _side_finish(result=slow, output=AgentOutput(outcome="error", detail="boom"), compute_ms=5)  # it woke up
    assert _side_take_over(existing=seen_by_taker, profile=competition.profile_a, worker="w2") is None
    result = ArenaResult.objects.get(pk=slow.pk)
    assert (result.state, result.attempt_id, result.error) == ("finished", slow.attempt_id, "boom")


def test_an_attempt_abandoned_already_keeps_its_own_record():
    competition = CompetitionFactory()
    claimed = _claim(competition, "a")
    Attempt.objects.filter(pk=claimed.attempt_id).update(
        outcome="abandoned", finished_at=timezone.now() - timedelta(hours=1), detail="Its worker (w1) lost the lease."
    )
    recorded = Attempt.objects.get(pk=claimed.attempt_id)
    assert competition_side_run(competition_id=competition.pk, side="a", worker="w2") == "finished"
    kept = Attempt.objects.get(pk=claimed.attempt_id)
    assert (kept.finished_at, kept.detail) == (recorded.finished_at, "Its worker (w1) lost the lease.")


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


def test_the_cycle_wakes_only_running_competitions(settings, run_commits):
    settings.ARENA_SIDE_TIMEOUT_SECONDS = 60
    decided = CompetitionFactory(status="no_winner", decided_at=timezone.now())
    Competition.objects.filter(pk=decided.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    assert competitions_resume() == {"competitions_resumed": 0}


@pytest.mark.usefixtures("no_workers")  # the sides' messages wait in the broker
def test_the_cycle_wakes_at_most_a_hundred_competitions_at_once(settings):
    settings.ARENA_SIDE_TIMEOUT_SECONDS = 60
    domain = paid_task().domain
    for _ in range(101):
        CompetitionFactory(task=TaskFactory(status="completed", domain=domain))
    Competition.objects.update(created_at=timezone.now() - timedelta(seconds=61))
    assert competitions_resume() == {"competitions_resumed": 100}


# --- A side's result ------------------------------------------------------------------------------


def test_a_passing_side_keeps_its_latency_summary_and_the_text_of_its_deliverable():
    claimed = _claim(CompetitionFactory(), "a")
    output = AgentOutput(
        outcome="approved", files=[_md("# Sales\nNorth leads.")], summary="North leads.", detail="Reviewed."
    )
    _side_finish(result=claimed, output=output, compute_ms=1234)
    result = ArenaResult.objects.get(pk=claimed.pk)
    assert (result.passed_gate, result.latency_ms, result.summary) == (True, 1234, "North leads.")
    assert (result.response, result.error) == ("# Sales\nNorth leads.", "")


def test_a_failing_side_keeps_its_error_and_no_response():
    claimed = _claim(CompetitionFactory(), "a")
    output = AgentOutput(outcome="error", summary="Half a report.", detail="The model timed out.")
    _side_finish(result=claimed, output=output, compute_ms=5)
    result = ArenaResult.objects.get(pk=claimed.pk)
    assert (result.passed_gate, result.response, result.error) == (False, "", "The model timed out.")


def test_a_rejected_side_with_files_does_not_pass_and_keeps_no_files():
    claimed = _claim(CompetitionFactory(), "a")
    output = AgentOutput(outcome="rejected", files=[_md("A weak report.")], detail="The review said no.")
    _side_finish(result=claimed, output=output, compute_ms=5)
    assert not ArenaResult.objects.get(pk=claimed.pk).passed_gate
    assert not ArenaFile.objects.exists()


def test_a_sides_files_are_stored_with_their_size_hash_and_type():
    claimed = _claim(CompetitionFactory(), "a")
    content = b"region,revenue\nNorth,10\n"
    output = AgentOutput(outcome="approved", files=[Produced("sales.csv", content, "text/csv")])
    _side_finish(result=claimed, output=output, compute_ms=5)
    stored = ArenaFile.objects.get(result=claimed)
    assert (stored.name, stored.content_type, stored.size) == ("sales.csv", "text/csv", len(content))
    assert stored.sha256 == hashlib.sha256(content).hexdigest()
    with stored.file.open("rb") as file:
        assert file.read() == content


def test_a_files_name_and_type_are_cut_to_their_columns():
    claimed = _claim(CompetitionFactory(), "a")
    name, content_type = "r" * 250 + ".md", "text/markdown; " + "x" * 150
    _side_finish(
        result=claimed, output=AgentOutput(outcome="approved", files=[Produced(name, b"#", content_type)]), compute_ms=5
    )
    stored = ArenaFile.objects.get(result=claimed)
    assert (stored.name, stored.content_type) == (name[:200], content_type[:100])


def test_two_files_of_one_name_are_both_kept_as_a_deliverables_would_be():
    claimed = _claim(CompetitionFactory(), "a")
    files = [Produced("notes.md", b"first", "text/markdown"), Produced("notes.md", b"second", "text/markdown")]
    _side_finish(result=claimed, output=AgentOutput(outcome="approved", files=files), compute_ms=5)
    assert list(ArenaFile.objects.filter(result=claimed).values_list("name", "size")) == [
        ("notes.md", 5), ("notes.md", 6)]  # fmt: skip


# A trigger's DDL commits on MariaDB: the test runs in transactions of its own, flushed after.
@pytest.mark.django_db(transaction=True)
def test_a_file_whose_row_is_refused_leaves_nothing_in_storage(refuse_inserts, media_root):
    claimed = _claim(CompetitionFactory(), "a")
    refuse_inserts("arena_arenafile")
    output = AgentOutput(outcome="approved", files=[Produced("notes.md", b"# Notes", "text/markdown")])
    with pytest.raises(DatabaseError):  # an integrity error on SQLite, the trigger's own error elsewhere
        _side_finish(result=claimed, output=output, compute_ms=5)
    assert not list((media_root / "private" / "arena").glob("*"))
    assert ArenaResult.objects.get(pk=claimed.pk).state == "running"


def test_a_passing_sides_cloud_answers_are_kept_for_training(fast_gateway, fake_openai):
    llm = _llm(fake_openai, *_table_answers(), cloud=True)
    competition = _replay_of_table_task(profile_a=llm)
    assert competition_side_run(competition_id=competition.pk, side="a", worker="w1") == "finished"
    attempt = ArenaResult.objects.get(competition=competition, side="a").attempt
    kept = TrainingExample.objects.filter(attempt=attempt)
    assert kept.exists()
    assert set(kept.values_list("task_id", "rating")) == {(competition.task_id, APPROVED["score"])}


# A trigger's DDL commits on MariaDB: the test runs in transactions of its own, flushed after.
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_workers")  # committed at once, the paid task would go to the pipeline first
def test_a_side_whose_finish_fails_keeps_no_files(fast_gateway, fake_openai, refuse_inserts, media_root):
    llm = _llm(fake_openai, *_table_answers(), cloud=True)
    competition = _replay_of_table_task(profile_a=llm)
    refuse_inserts("agency_trainingexample")  # fails after the side's files were stored
    with pytest.raises(DatabaseError):
        competition_side_run(competition_id=competition.pk, side="a", worker="w1")
    assert not ArenaFile.objects.exists()
    assert not list((media_root / "private" / "arena").glob("*"))


def test_the_response_is_the_first_text_file_whatever_its_parameters():
    output = AgentOutput(
        outcome="approved",
        files=[
            Produced("chart.png", b"\x89PNG", "image/png"),
            Produced("notes.txt", b"North leads.", "text/plain; charset=utf-8"),
            Produced("report.md", b"# Report", "text/markdown"),
        ],
        summary="A summary.",
    )
    assert response_text(output) == "North leads."


def test_undecodable_bytes_in_the_response_are_replaced():
    output = AgentOutput(outcome="approved", files=[Produced("notes.txt", b"caf\xe9 North", "text/plain")])
    assert response_text(output) == "caf\ufffd North"


# --- The join -------------------------------------------------------------------------------------


def test_equal_profits_and_total_costs_go_to_the_incumbent_however_the_costs_split():
    competition = CompetitionFactory()  # no incumbent: side a keeps a tie
    result_add(competition, "a", passed=True, revenue=100, model_cost="1", compute_cost="0")
    result_add(competition, "b", passed=True, revenue=100, model_cost="0", compute_cost="1")
    assert competition_decide(competition_id=competition.pk) == "decided"
    competition.refresh_from_db()
    assert (competition.winner, competition.reason) == (competition.profile_a, "incumbent")


def test_the_no_winner_escalation_names_each_sides_error_or_that_it_did_not_pass():
    competition = _live(paid_task())
    result_add(competition, "a", passed=False)
    result_add(competition, "b", passed=False)
    ArenaResult.objects.filter(competition=competition, side="a").update(error="The model timed out.")
    assert competition_decide(competition_id=competition.pk) == "no_winner"
    escalation = Escalation.objects.get(task=competition.task)
    assert escalation.detail == (
        f"{competition.profile_a.name}: The model timed out.; {competition.profile_b.name}: did not pass"
    )


def test_a_task_whose_lease_was_taken_meanwhile_is_not_escalated():
    competition = _live(paid_task())
    Task.objects.filter(pk=competition.task_id).update(lease_owner="w9")  # the pipeline took it back
    result_add(competition, "a", passed=False)
    result_add(competition, "b", passed=False)
    assert competition_decide(competition_id=competition.pk) == "no_winner"
    assert not Escalation.objects.filter(task=competition.task).exists()
    assert Task.objects.get(pk=competition.task_id).status == "processing"


def test_the_winners_summary_becomes_the_tasks_experience():
    competition = _live(paid_task())
    result_add(competition, "a", passed=True, revenue=100, summary="North leads.")
    result_add(competition, "b", passed=False)
    assert competition_decide(competition_id=competition.pk) == "decided"
    assert Task.objects.get(pk=competition.task_id).status == "completed"
    assert Experience.objects.get(task=competition.task).summary == "North leads."


# --- Starting by hand -----------------------------------------------------------------------------


def test_an_operator_starts_a_live_competition_on_a_paid_task(settings, run_commits):
    settings.COMPUTE_CENTS_PER_SECOND = D("0")
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


def test_a_live_competition_holds_the_tasks_lease_for_a_sides_timeout(settings):
    settings.ARENA_SIDE_TIMEOUT_SECONDS = 600
    before = timezone.now()
    competition = _live(paid_task())
    task = Task.objects.get(pk=competition.task_id)
    assert (task.status, task.lease_owner) == ("processing", competition.holder)
    assert before + timedelta(seconds=600) <= task.lease_until <= timezone.now() + timedelta(seconds=600)


def test_the_tasks_moves_name_the_competition_and_whoever_started_it():
    competition = _live(paid_task())
    moves = competition.task.events.filter(to_status__in=["planning", "processing"]).order_by("pk")
    assert list(moves.values_list("to_status", "actor", "reason")) == [
        ("planning", "op", f"competition #{competition.pk}"),
        ("processing", "op", f"competition #{competition.pk}"),
    ]


def test_a_pipeline_worker_that_lost_the_lease_cannot_hand_the_task_to_a_competition():
    task = paid_task()
    Task.objects.filter(pk=task.pk).update(status="planning", lease_owner="w2")  # w2 took it from w1
    with pytest.raises(CompetitionRefused, match="cannot compete now"):
        competition_start(
            task=Task.objects.get(pk=task.pk),
            profile_a=AgentProfile.objects.get(name="baseline"),
            profile_b=ProfileFactory(),
            actor="pipeline w1",
            holder="w1",
        )
    assert not Competition.objects.exists()
    assert Task.objects.get(pk=task.pk).status == "planning"


def test_a_pair_that_met_on_another_task_may_meet_on_this_one():
    domain = paid_task().domain
    baseline, other = AgentProfile.objects.get(name="baseline"), ProfileFactory()
    competition_start(
        task=TaskFactory(status="completed", domain=domain), profile_a=baseline, profile_b=other, actor="op"
    )
    task = TaskFactory(status="completed", domain=domain)
    assert competition_start(task=task, profile_a=baseline, profile_b=other, actor="op").task == task


def test_the_incumbent_is_recorded_only_when_the_routed_profile_is_in_the_pair():
    task = TaskFactory(status="completed", domain=paid_task().domain)  # the baseline is routed
    competition = competition_start(task=task, profile_a=ProfileFactory(), profile_b=ProfileFactory(), actor="op")
    assert competition.incumbent is None


def test_the_starters_name_is_cut_to_a_hundred_characters():
    task = TaskFactory(status="completed", domain=paid_task().domain)
    actor = "operator " + "x" * 150
    competition = competition_start(
        task=task, profile_a=AgentProfile.objects.get(name="baseline"), profile_b=ProfileFactory(), actor=actor
    )
    assert Competition.objects.get(pk=competition.pk).started_by == actor[:100]


# A trigger's DDL commits on MariaDB: the test runs in transactions of its own, flushed after.
@pytest.mark.django_db(transaction=True)
def test_an_insert_refused_for_another_reason_is_not_taken_for_a_pair_that_met(refuse_inserts):
    domain = paid_task().domain
    task = TaskFactory(status="completed", domain=domain)
    baseline, other = AgentProfile.objects.get(name="baseline"), ProfileFactory()
    competition_start(
        task=TaskFactory(status="completed", domain=domain), profile_a=baseline, profile_b=other, actor="op"
    )
    competition_start(task=task, profile_a=baseline, profile_b=ProfileFactory(), actor="op")
    refuse_inserts("arena_competition")
    with pytest.raises(DatabaseError):  # the same pair on another task, another pair on this one: neither met here
        competition_start(task=task, profile_a=baseline, profile_b=other, actor="op")


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


def _live(task: Task) -> Competition:
    """A live competition of the baseline against a new profile, started by an operator (its sides'
    messages are queued after a commit the test never makes)."""
    return competition_start(
        task=task, profile_a=AgentProfile.objects.get(name="baseline"), profile_b=ProfileFactory(), actor="op"
    )


def _live_with_lapsed_lease(capture) -> Competition:
    """A live competition the pipeline started, whose sides' messages were lost and whose lease ran out."""
    ProfileFactory(name="second-baseline")
    task = valuable_csv_task()
    with capture(execute=False):
        assert task_work_run(task_id=task.pk, worker="w1") == "arena"
    Task.objects.filter(pk=task.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    return Competition.objects.get(task=task)


def _llm(server, *answers, cloud: bool = False) -> AgentProfile:
    """An LLM profile at the fake server, which answers its plan, narrative and review calls with `answers`."""
    deployment = deployment_at(server.url)
    if cloud:
        Provider.objects.filter(pk=deployment.provider_id).update(kind="cloud")
    server.then(*answers)
    return AgentProfile.objects.create(name="llm", kind="llm", route=route_of(deployment), priority=1)


def _table_answers(delay: float = 0) -> tuple:
    import json

    return ok(json.dumps(BY_REGION), delay=delay), ok("North leads."), ok(json.dumps(APPROVED))


def _replay_of_table_task(**fields) -> Competition:
    """A running competition on the completed regional sales task (a replay: the task stays as it is)."""
    task = paid_task()
    Task.objects.filter(pk=task.pk).update(status="completed")
    return CompetitionFactory(task=Task.objects.get(pk=task.pk), **fields)


def _md(text: str) -> Produced:
    return Produced("report.md", text.encode(), "text/markdown")
