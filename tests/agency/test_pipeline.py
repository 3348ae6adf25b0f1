"""The work pipeline with the baseline agent: claim, lease, attempts, completion and the failure
rules (docs/agents.md)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agency.models import AgentProfile, Attempt, ClientEmail, Deliverable, Experience, Task, TrainingExample
from agency.pipeline import LeaseLost, lease_renew, task_claim, task_work_run, tasks_requeue
from agency.services.tasks import InvalidTransition, task_transition
from escalations.models import Escalation
from tests.agency.pipeline_setup import paid_task

pytestmark = pytest.mark.django_db

S = Task.Status


def test_it_completes_a_data_task_with_the_baseline_report():
    task = paid_task()
    assert task_work_run(task_id=task.pk, worker="w1") == "completed"
    task.refresh_from_db()
    assert task.status == S.COMPLETED
    assert (task.lease_owner, task.lease_until, task.attempts) == ("", None, 1)
    names = sorted(Deliverable.objects.filter(task=task).values_list("name", "content_type"))
    assert names == [("chart.png", "image/png"), ("report.html", "text/html; charset=utf-8")]
    attempt = Attempt.objects.get(task=task)
    assert (attempt.outcome, attempt.number, attempt.profile.name, attempt.worker) == ("approved", 1, "baseline", "w1")
    assert attempt.finished_at is not None and attempt.model_cost_cents == 0
    assert Experience.objects.get(task=task).summary == attempt.summary != ""
    assert not TrainingExample.objects.exists()  # no model, nothing to distil
    assert ClientEmail.objects.filter(task=task, kind=ClientEmail.Kind.DELIVERY_LINK).count() == 1
    moves = list(task.events.values_list("from_status", "to_status"))
    assert moves[-4:] == [("paid", "planning"), ("planning", "processing"), ("processing", "reviewing"),
                          ("reviewing", "completed")]  # fmt: skip


def test_it_escalates_a_text_task_the_baseline_declines():
    task = paid_task("legal", "consulting_agreement.txt", title="Review a contract")
    assert task_work_run(task_id=task.pk, worker="w1") == "escalated"
    task.refresh_from_db()
    assert task.status == S.ESCALATED and task.lease_owner == ""
    escalation = Escalation.objects.get(task=task)
    assert escalation.reason == Escalation.Reason.NO_CAPABLE_AGENT
    assert "CSV, XLSX and JSON" in escalation.detail
    assert Attempt.objects.get(task=task).outcome == Attempt.Outcome.DECLINED
    assert not Deliverable.objects.filter(task=task).exists()


def test_it_escalates_when_no_profile_is_active():
    AgentProfile.objects.update(active=False)
    task = paid_task()
    assert task_work_run(task_id=task.pk, worker="w1") == "escalated"
    assert Escalation.objects.get(task=task).reason == Escalation.Reason.NO_CAPABLE_AGENT
    assert not Attempt.objects.exists()


def test_it_prefers_the_domain_profile_with_the_lowest_priority():
    AgentProfile.objects.create(
        name="other-domain", kind="baseline", priority=1, domain=paid_task("legal", None).domain
    )
    AgentProfile.objects.create(name="data-first", kind="baseline", priority=5)
    task = paid_task()
    task_work_run(task_id=task.pk, worker="w1")
    assert Attempt.objects.get(task=task).profile.name == "data-first"


def test_it_fails_a_task_whose_table_cannot_be_read(tmp_path):
    task = paid_task()
    task.input_file.save("broken.csv", _bytes(b'a,b\n"unterminated,1\n'), save=True)
    task.input_name = "broken.csv"
    task.save(update_fields=["input_name"])
    assert task_work_run(task_id=task.pk, worker="w1") == "failed"
    task.refresh_from_db()
    assert task.status == S.FAILED and task.last_error != ""
    assert Attempt.objects.get(task=task).outcome == Attempt.Outcome.ERROR
    assert not Escalation.objects.filter(task=task).exists()


def test_a_high_value_task_whose_attempt_errs_is_escalated_at_once():
    task = paid_task()
    task.input_file.save("broken.csv", _bytes(b"\x00\x01not a table"), save=True)
    Task.objects.filter(pk=task.pk).update(input_name="broken.csv", is_high_value=True)
    assert task_work_run(task_id=task.pk, worker="w1") == "escalated"
    assert Escalation.objects.get(task=task).reason == Escalation.Reason.HIGH_VALUE_FAILURE
    assert Attempt.objects.filter(task=task).count() == 1


# --- claims and leases ----------------------------------------------------------------------------


def test_it_claims_a_paid_task_once():
    task = paid_task()
    first = task_claim(task_id=task.pk, worker="w1")
    assert first is not None and first.status == S.PLANNING and first.lease_owner == "w1"
    assert task_claim(task_id=task.pk, worker="w2") is None
    assert task_work_run(task_id=task.pk, worker="w3") == "not claimed"
    task.refresh_from_db()
    assert task.lease_owner == "w1" and not Attempt.objects.exists()


def test_it_leaves_finished_and_unknown_tasks_alone():
    task = paid_task()
    task_work_run(task_id=task.pk, worker="w1")
    assert task_work_run(task_id=task.pk, worker="w2") == "not claimed"
    assert task_work_run(task_id=10**9, worker="w2") == "not claimed"
    assert Deliverable.objects.filter(task=task).count() == 2


def test_it_takes_over_a_task_whose_lease_ran_out():
    task = task_claim(task_id=paid_task().pk, worker="w1")
    task_transition(task=task, to=S.PROCESSING, actor="test", holder="w1")
    stale = Attempt.objects.create(task=task, profile=AgentProfile.objects.get(name="baseline"), number=1, worker="w1")
    Task.objects.filter(pk=task.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    taken = task_claim(task_id=task.pk, worker="w2")
    assert taken is not None and taken.lease_owner == "w2" and taken.lease_until > timezone.now()
    stale.refresh_from_db()
    assert stale.outcome == Attempt.Outcome.ABANDONED and stale.finished_at is not None
    assert task_claim(task_id=task.pk, worker="w3") is None  # w2's lease is live
    with pytest.raises(LeaseLost):
        lease_renew(task=task, worker="w1")
    with pytest.raises(InvalidTransition, match="Another worker holds the task now; w1 cannot move it"):
        task_transition(task=task, to=S.REVIEWING, actor="test", holder="w1")  # the old worker moves nothing


def test_the_taker_over_finishes_the_task_once_with_a_new_attempt():
    task = task_claim(task_id=paid_task().pk, worker="w1")
    Task.objects.filter(pk=task.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert task_work_run(task_id=task.pk, worker="w2") == "completed"
    assert Deliverable.objects.filter(task=task).count() == 2
    assert list(Attempt.objects.filter(task=task).values_list("worker", "outcome")) == [("w2", "approved")]


def test_a_worker_that_lost_its_lease_keeps_no_deliverable(monkeypatch, settings):
    from agency import pipeline

    task = paid_task()
    real_run = pipeline.agent_run

    def slow_then_overtaken(**kwargs):
        output = real_run(**kwargs)
        # While this worker was busy, its lease ran out and w2 took the task over.
        Task.objects.filter(pk=task.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
        assert task_claim(task_id=task.pk, worker="w2") is not None
        return output

    monkeypatch.setattr(pipeline, "agent_run", slow_then_overtaken)
    assert task_work_run(task_id=task.pk, worker="w1") == "lease lost"
    task.refresh_from_db()
    assert task.status == S.PROCESSING and task.lease_owner == "w2"
    assert not Deliverable.objects.filter(task=task).exists()
    assert Attempt.objects.get(task=task).outcome == Attempt.Outcome.ABANDONED


def test_the_cycle_sends_again_tasks_left_waiting_or_dropped(settings, django_capture_on_commit_callbacks):
    settings.TASK_REQUEUE_PAID_AFTER_SECONDS = 60
    waiting, fresh, dropped = paid_task(), paid_task(), paid_task()
    Task.objects.filter(pk=waiting.pk).update(paid_at=timezone.now() - timedelta(seconds=61))
    task_claim(task_id=dropped.pk, worker="dead-worker")
    Task.objects.filter(pk=dropped.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    assert tasks_requeue() == {"requeued": 2}  # eager Celery: worked right here
    statuses = dict(Task.objects.values_list("pk", "status"))
    assert statuses[waiting.pk] == statuses[dropped.pk] == S.COMPLETED
    assert statuses[fresh.pk] == S.PAID


def _bytes(content: bytes):
    from django.core.files.base import ContentFile

    return ContentFile(content)


def arena_stand_in(*, task, worker):
    """A hook in place of the arena: records who asked, takes high-value tasks and leaves them as they are."""
    arena_stand_in.calls.append((task.pk, worker))
    return "arena" if task.is_high_value else None


arena_stand_in.calls = []


def test_the_arena_hook_is_offered_each_first_attempt_and_takes_what_it_wants(settings):
    settings.PIPELINE_ARENA_HOOK = "tests.agency.test_pipeline.arena_stand_in"
    arena_stand_in.calls.clear()
    ordinary, valuable = paid_task(), paid_task(complexity="complex")  # 30000 cents: high value
    assert valuable.is_high_value and not ordinary.is_high_value
    assert task_work_run(task_id=valuable.pk, worker="w1") == "arena"
    assert task_work_run(task_id=ordinary.pk, worker="w1") == "completed"
    assert arena_stand_in.calls == [(valuable.pk, "w1"), (ordinary.pk, "w1")]
    assert not Attempt.objects.filter(task=valuable).exists()


def test_without_an_arena_a_high_value_task_takes_the_single_agent_path(settings):
    settings.PIPELINE_ARENA_HOOK = ""
    valuable = paid_task(complexity="complex")
    assert task_work_run(task_id=valuable.pk, worker="w1") == "completed"


def test_an_operators_retry_works_the_task_again_with_a_fresh_budget(django_capture_on_commit_callbacks):
    from escalations.services import escalation_resolve

    task = paid_task("legal", "consulting_agreement.txt", title="Review a contract")
    task_work_run(task_id=task.pk, worker="w1")  # the baseline declines: escalated
    Task.objects.filter(pk=task.pk).update(attempts=3)
    AgentProfile.objects.create(name="tables-only", kind="baseline", priority=1)  # still declines text
    with django_capture_on_commit_callbacks(execute=True):  # the hand-over runs once the resolution commits
        escalation_resolve(escalation=Escalation.objects.get(task=task), resolution="retried", actor="op")
    task.refresh_from_db()
    assert task.status == S.ESCALATED and task.attempts == 1  # worked again from 0, declined again
    assert list(Attempt.objects.filter(task=task).values_list("profile__name", flat=True)) == [
        "baseline", "tables-only"]  # fmt: skip
    assert Escalation.objects.filter(task=task).count() == 2  # a new episode


def test_a_task_escalated_by_someone_else_while_its_agent_works_keeps_nothing_of_the_work(monkeypatch):
    from agency import pipeline
    from escalations.services import escalation_open

    task = paid_task()
    real_run = pipeline.agent_run

    def escalated_meanwhile(**kwargs):
        output = real_run(**kwargs)
        escalation_open(task=Task.objects.get(pk=task.pk), reason="integration", actor="marketplace")
        return output

    monkeypatch.setattr(pipeline, "agent_run", escalated_meanwhile)
    assert task_work_run(task_id=task.pk, worker="w1") == "lease lost"
    task.refresh_from_db()
    assert task.status == S.ESCALATED
    assert not Deliverable.objects.filter(task=task).exists()


def test_process_tasks_works_the_waiting_tasks_oldest_first_within_its_limit():
    from io import StringIO

    from django.core.management import CommandError, call_command

    first, second = paid_task(), paid_task()
    out = StringIO()
    call_command("process_tasks", "--limit", "1", stdout=out)
    assert f"Task #{first.pk}: completed" in out.getvalue()
    assert "Worked 1 task: 1 completed." in out.getvalue()
    assert Task.objects.get(pk=second.pk).status == S.PAID
    out = StringIO()
    call_command("process_tasks", stdout=out)
    assert "Tasks to work: 1." in out.getvalue() and Task.objects.get(pk=second.pk).status == S.COMPLETED
    with pytest.raises(CommandError, match="at least 1"):
        call_command("process_tasks", "--limit", "0")


def test_a_profiles_retry_budget_caps_its_attempts(fake_openai, fast_gateway):
    from tests.agency.fake_openai import ok
    from tests.agency.gateway_setup import deployment_at, route_of

    AgentProfile.objects.create(name="llm", kind="llm", route=route_of(deployment_at(fake_openai.url)), priority=1,
                                retry_budget=2)  # fmt: skip
    fake_openai.default = ok('{"approved": false, "score": 1, "issues": ["no"]}')  # every answer a rejection
    fake_openai.then(ok('{"approach": "a", "outline": ["b"]}'), ok("Draft."))
    fake_openai.then(ok('{"approved": false, "score": 1, "issues": ["no"]}'))
    fake_openai.then(ok('{"approach": "a", "outline": ["b"]}'), ok("Draft."))
    task = paid_task("legal", "consulting_agreement.txt")
    assert task_work_run(task_id=task.pk, worker="w1") == "escalated"
    assert Attempt.objects.filter(task=task).count() == 2  # not TASK_MAX_ATTEMPTS (3)
    assert Escalation.objects.get(task=task).reason == Escalation.Reason.ATTEMPTS_EXHAUSTED


def test_a_failed_task_records_why_on_itself_and_its_event_only(tmp_path):
    held = task_claim(task_id=paid_task().pk, worker="w1")  # another task of the same worker name
    task = paid_task()
    task.input_file.save("broken.csv", _bytes(b'a,b\n"unterminated,1\n'), save=True)
    Task.objects.filter(pk=task.pk).update(input_name="broken.csv")
    assert task_work_run(task_id=task.pk, worker="w1") == "failed"
    task.refresh_from_db()
    assert "not a CSV, XLSX or JSON table" in task.last_error
    assert task.last_error[:100] in task.events.get(to_status="failed").reason
    assert Task.objects.get(pk=held.pk).last_error == ""


def test_only_waiting_tasks_are_workable_paid_ones_oldest_payment_first():
    from agency.pipeline import tasks_workable

    later, earlier, live, dropped = paid_task(), paid_task(), paid_task(), paid_task()
    now = timezone.now()
    Task.objects.filter(pk=later.pk).update(paid_at=now - timedelta(seconds=10))
    Task.objects.filter(pk=earlier.pk).update(paid_at=now - timedelta(seconds=20))
    task_claim(task_id=live.pk, worker="alive")
    task_claim(task_id=dropped.pk, worker="dead")
    Task.objects.filter(pk=dropped.pk).update(lease_until=now - timedelta(seconds=1))
    assert tasks_workable() == [earlier.pk, later.pk, dropped.pk]
    assert tasks_workable(limit=2) == [earlier.pk, later.pk]
    assert tasks_workable(paid_after_seconds=15) == [earlier.pk, dropped.pk]
    # Seen from an hour later, the live lease has run out too.
    assert tasks_workable(now=now + timedelta(hours=1)) == [earlier.pk, later.pk, live.pk, dropped.pk]


def test_the_requeue_step_judges_leases_at_the_time_it_is_given(settings):
    settings.TASK_REQUEUE_PAID_AFTER_SECONDS = 3600
    task_claim(task_id=paid_task().pk, worker="alive")
    assert tasks_requeue() == {"requeued": 0}
    assert tasks_requeue(now=timezone.now() + timedelta(seconds=settings.TASK_LEASE_SECONDS + 1)) == {"requeued": 1}


def test_a_completion_whose_lease_ran_out_while_storing_keeps_no_file(monkeypatch, media_root):
    from agency import pipeline

    task = paid_task()
    real_add = pipeline.deliverable_add

    def slow_storage(**kwargs):
        stored = real_add(**kwargs)
        if Task.objects.filter(pk=task.pk, lease_owner="w1").exists():  # the first file took too long
            Task.objects.filter(pk=task.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
            assert task_claim(task_id=task.pk, worker="w2") is not None
        return stored

    monkeypatch.setattr(pipeline, "deliverable_add", slow_storage)
    assert task_work_run(task_id=task.pk, worker="w1") == "lease lost"
    # (The takeover ran on this test's one connection, inside the completion's transaction, and
    # rolled back with it; what matters is that the completion was refused.)
    assert Task.objects.get(pk=task.pk).status == S.REVIEWING
    assert not Deliverable.objects.exists()
    assert not any(path.is_file() for path in (media_root / "private").rglob("*") if "deliverables" in path.parts)


def test_the_completion_event_names_the_attempt_and_its_profile():
    task = paid_task()
    task_work_run(task_id=task.pk, worker="w1")
    assert task.events.get(to_status="completed").reason == "attempt 1 by baseline approved"


def test_an_escalation_frees_only_its_own_tasks_lease():
    held = task_claim(task_id=paid_task().pk, worker="w1")
    task = paid_task("legal", "consulting_agreement.txt")
    assert task_work_run(task_id=task.pk, worker="w1") == "escalated"
    assert Task.objects.get(pk=task.pk).lease_owner == ""
    assert Task.objects.get(pk=held.pk).lease_owner == "w1"
