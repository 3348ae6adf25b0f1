"""The agents in the operator back office: profiles, attempts on the task, what was learned."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agency.models import AgentProfile, Attempt, Experience
from agency.pipeline import task_work_run
from tests.agency.pipeline_setup import paid_task

pytestmark = pytest.mark.django_db


def test_the_task_page_shows_each_attempt_with_its_verdict_and_cost(admin_client):
    task = paid_task()
    task_work_run(task_id=task.pk, worker="w1")
    Attempt.objects.filter(task=task).update(model_cost_cents="0.8750000000")
    page = admin_client.get(f"/admin/agency/task/{task.pk}/change/").content.decode()
    assert "baseline" in page and "approved" in page and "$0.00875" in page
    assert "the figures are computed" in page  # the verdict


def test_an_operator_reorders_profiles_from_the_list(admin_client):
    llm = AgentProfile.objects.create(name="llm", kind="llm", priority=10)
    form = {"form-TOTAL_FORMS": 2, "form-INITIAL_FORMS": 2, "_save": "Save"}
    for i, profile in enumerate(AgentProfile.objects.order_by("priority", "name")):
        form |= {f"form-{i}-id": profile.pk, f"form-{i}-priority": 2000 if profile == llm else profile.priority,
                 f"form-{i}-active": "on"}  # fmt: skip
    assert admin_client.post("/admin/agency/agentprofile/", form).status_code == 302
    llm.refresh_from_db()
    assert llm.priority == 2000


@pytest.mark.parametrize("url", ["/admin/agency/experience/", "/admin/agency/trainingexample/",
                                 "/admin/agency/agentprofile/"])  # fmt: skip
def test_the_agents_lists_render_in_a_constant_number_of_queries(admin_client, url):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url).status_code == 200
        return len(captured)

    task_work_run(task_id=paid_task().pk, worker="w1")
    few = queries()
    for _ in range(3):
        task_work_run(task_id=paid_task().pk, worker="w1")
        AgentProfile.objects.create(name=f"p{AgentProfile.objects.count()}", kind="baseline")
    assert Experience.objects.count() == 4
    assert queries() == few
