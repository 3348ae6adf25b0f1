"""The LLM agent in the pipeline, over real HTTP to the local OpenAI-compatible server: plans from
the catalogue, fail-closed plans and verdicts, review rejections, distillation (docs/agents.md)."""

import csv
import json
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile

from agency.models import AgentProfile, Attempt, Deliverable, Experience, ModelCall, Task, TrainingExample
from agency.pipeline import task_work_run
from escalations.models import Escalation
from tests.agency.fake_openai import ok, status
from tests.agency.gateway_setup import deployment_at, route_of
from tests.agency.pipeline_setup import APPROVED, BY_REGION, SAMPLES, paid_task

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_gateway")]

REJECTED = {"approved": False, "score": 2, "issues": ["the narrative ignores the returns"]}


@pytest.fixture
def llm_profile(fake_openai):
    """An LLM profile ahead of the baseline, on one deployment at the fake server."""
    deployment = deployment_at(fake_openai.url)
    return AgentProfile.objects.create(name="llm", kind="llm", route=route_of(deployment), priority=1)


def _answers(*bodies) -> list:
    return [ok(body if isinstance(body, str) else json.dumps(body)) for body in bodies]


def _revenue_by_region() -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    with (SAMPLES / "regional_sales.csv").open(newline="") as file:
        for row in csv.DictReader(file):
            totals[row["region"]] = totals.get(row["region"], Decimal(0)) + Decimal(row["revenue_usd"])
    return totals


def test_it_completes_a_data_task_from_a_plan_of_the_catalogue(fake_openai, llm_profile):
    fake_openai.then(*_answers(BY_REGION, "North sells most.", APPROVED))
    task = paid_task()
    assert task_work_run(task_id=task.pk, worker="w1") == "completed"
    attempt = Attempt.objects.get(task=task)
    assert (attempt.profile, attempt.outcome, attempt.plan, attempt.verdict) == (llm_profile, "approved", BY_REGION,
                                                                                 APPROVED)  # fmt: skip
    calls = ModelCall.objects.filter(agent_attempt=attempt).order_by("pk")
    assert [c.purpose for c in calls] == ["plan", "work", "review"]
    assert all(c.task_id == task.pk for c in calls)
    assert attempt.model_cost_cents == sum(c.cost_cents for c in calls) > 0
    report = Deliverable.objects.get(task=task, name="report.html").file.read().decode()
    best = max(_revenue_by_region().items(), key=lambda item: item[1])
    assert best[0] in report and f"{best[1]:.1f}".rstrip("0").rstrip(".") in report.replace(",", "")
    assert "North sells most." in report
    assert [r["json"]["temperature"] for r in fake_openai.requests] == [0, 0, 0]


def test_a_plan_outside_the_catalogue_fails_closed_and_three_such_attempts_escalate(fake_openai, llm_profile):
    unknown = {"steps": [{"op": "exec", "args": {"code": "print(1)"}, "title": "x"}], "narrative_focus": ""}
    fake_openai.then(*_answers(unknown, unknown, unknown))
    task = paid_task()
    assert task_work_run(task_id=task.pk, worker="w1") == "escalated"
    attempts = list(Attempt.objects.filter(task=task).values_list("number", "outcome", "error_class"))
    assert attempts == [(n, "error", "GatewayOutputInvalid") for n in (1, 2, 3)]
    assert Escalation.objects.get(task=task).reason == Escalation.Reason.ATTEMPTS_EXHAUSTED
    assert len(fake_openai.requests) == 3  # a refused plan goes no further: no work, no review
    assert not Deliverable.objects.filter(task=task).exists()


def test_a_plan_that_is_python_code_is_never_run(fake_openai, llm_profile, tmp_path):
    marker = tmp_path / "pwned"
    code = f"__import__('os').system('touch {marker}')"
    in_a_value = {
        "steps": [{"op": "filter", "args": {"conditions": [{"column": "region", "op": "==", "value": code}]},
                   "title": "x"}],
        "narrative_focus": code,
    }  # fmt: skip
    fake_openai.then(*_answers(code, in_a_value, "Nothing matched.", REJECTED, code))
    task = paid_task()
    task_work_run(task_id=task.pk, worker="w1")
    assert not marker.exists()
    outcomes = list(Attempt.objects.filter(task=task).values_list("outcome", "error_class"))
    assert outcomes == [("error", "GatewayOutputInvalid"), ("rejected", ""), ("error", "GatewayOutputInvalid")]


def test_a_plan_naming_a_missing_column_is_refused_and_the_next_attempt_runs(fake_openai, llm_profile):
    missing = {"steps": [{"op": "value_counts", "args": {"column": "country"}, "title": "x"}], "narrative_focus": ""}
    fake_openai.then(*_answers(missing, BY_REGION, "North sells most.", APPROVED))
    task = paid_task()
    assert task_work_run(task_id=task.pk, worker="w1") == "completed"
    first, second = Attempt.objects.filter(task=task).order_by("number")
    assert (first.outcome, first.error_class, second.outcome) == ("error", "PlanRefused", "approved")
    assert "country" in first.detail


def test_a_rejected_review_starts_another_attempt(fake_openai, llm_profile):
    fake_openai.then(*_answers(BY_REGION, "Too short.", REJECTED, BY_REGION, "North sells most.", APPROVED))
    task = paid_task()
    assert task_work_run(task_id=task.pk, worker="w1") == "completed"
    assert list(Attempt.objects.filter(task=task).values_list("outcome", flat=True)) == ["rejected", "approved"]
    assert "ignores the returns" in Attempt.objects.get(task=task, number=1).detail
    moves = list(task.events.values_list("from_status", "to_status"))
    assert ("reviewing", "processing") in moves
    assert Deliverable.objects.filter(task=task, name="report.html").count() == 1


def test_it_drafts_a_text_task_as_markdown(fake_openai, llm_profile):
    outline = {"approach": "Clause by clause.", "outline": ["Liability", "Termination"]}
    fake_openai.then(*_answers(outline, "# Review\n\nClause 7 caps liability.", APPROVED))
    task = paid_task("legal", "consulting_agreement.txt", title="Review a contract")
    assert task_work_run(task_id=task.pk, worker="w1") == "completed"
    draft = Deliverable.objects.get(task=task)
    assert (draft.name, draft.content_type) == ("deliverable.md", "text/markdown; charset=utf-8")
    assert draft.file.read().decode() == "# Review\n\nClause 7 caps liability."
    sent = fake_openai.requests[1]["json"]["messages"][-1]["content"]
    assert (SAMPLES / "consulting_agreement.txt").read_text()[:200] in sent  # the client's document went along


def test_approved_cloud_work_becomes_one_training_example_with_the_exact_messages(fake_openai, llm_profile):
    llm_profile.route.deployments.get().provider.__class__.objects.update(kind="cloud")
    fake_openai.then(*_answers(BY_REGION, "North sells most.", APPROVED))
    task = paid_task()
    task_work_run(task_id=task.pk, worker="w1")
    example = TrainingExample.objects.get()
    assert example.messages == fake_openai.requests[1]["json"]["messages"]
    assert (example.response, example.purpose, example.rating) == ("North sells most.", "work", 4)
    assert (example.task, example.domain, example.teacher) == (task, task.domain, llm_profile.route.deployments.get())


def test_local_model_work_is_not_kept_for_distillation(fake_openai, llm_profile):
    fake_openai.then(*_answers(BY_REGION, "North sells most.", APPROVED))
    task_work_run(task_id=paid_task().pk, worker="w1")
    assert Task.objects.get().status == "completed" and not TrainingExample.objects.exists()


def test_planning_is_shown_the_closest_approved_work_of_the_domain(fake_openai, llm_profile):
    fake_openai.then(*_answers(BY_REGION, "North sells most; returns are low.", APPROVED))
    first = paid_task(title="Regional revenue of the spring quarter")
    task_work_run(task_id=first.pk, worker="w1")
    assert Experience.objects.get(task=first).summary == "North sells most; returns are low."
    fake_openai.then(*_answers(BY_REGION, "Again North.", APPROVED))
    second = paid_task(title="Regional revenue of the summer quarter")
    task_work_run(task_id=second.pk, worker="w1")
    prompt = fake_openai.requests[3]["json"]["messages"][-1]["content"]
    assert "Regional revenue of the spring quarter: North sells most; returns are low." in prompt


def test_a_model_that_never_answers_exhausts_the_attempts(fake_openai, llm_profile):
    fake_openai.default = status(500)
    task = paid_task()
    assert task_work_run(task_id=task.pk, worker="w1") == "escalated"
    errors = set(Attempt.objects.filter(task=task).values_list("error_class", flat=True))
    assert errors == {"GatewayUnavailable"} and Attempt.objects.filter(task=task).count() == 3
    assert Escalation.objects.get(task=task).reason == Escalation.Reason.ATTEMPTS_EXHAUSTED


def test_the_plan_request_describes_the_catalogue_and_the_table(fake_openai, llm_profile):
    from agency.agents.operations import ARGS_SCHEMAS

    fake_openai.then(*_answers(BY_REGION, "North sells most.", APPROVED))
    task_work_run(task_id=paid_task().pk, worker="w1")
    system, user = fake_openai.requests[0]["json"]["messages"]
    assert all(f'"{op}"' in system["content"] for op in ARGS_SCHEMAS)
    assert "revenue_usd" in user["content"] and "Summarise sales by region" in user["content"]
    assert fake_openai.requests[0]["json"]["response_format"]["json_schema"]["schema"]["required"] == [
        "steps", "narrative_focus"]  # fmt: skip


def test_a_long_document_goes_to_the_model_cut_to_its_limit(fake_openai, llm_profile):
    from agency.agents import llm

    outline = {"approach": "Read it.", "outline": ["All"]}
    fake_openai.then(*_answers(outline, "Done.", APPROVED))
    task = paid_task("legal", "consulting_agreement.txt", title="Review a contract")
    task.input_file.save("long.txt", ContentFile(b"x" * (llm.DOCUMENT_CHARS_MAX + 500)), save=True)
    task_work_run(task_id=task.pk, worker="w1")
    sent = fake_openai.requests[1]["json"]["messages"][-1]["content"]
    assert "x" * llm.DOCUMENT_CHARS_MAX in sent and "x" * (llm.DOCUMENT_CHARS_MAX + 1) not in sent
    assert "the rest of the document is left out" in sent
