"""The gateway in the admin: deployments with their breaker, routes, and the ledger's totals."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agency.models import BreakerEvent, BreakerState, ModelCall
from tests.agency.factories import TaskFactory
from tests.agency.gateway_setup import deployment_at, route_of

pytestmark = pytest.mark.django_db

LEDGER = "/admin/agency/modelcall/"


def _call(deployment, purpose="work", cost="0.875", tokens=(1500, 500), task=None, outcome="ok"):
    return ModelCall.objects.create(
        deployment=deployment, purpose=purpose, task=task, attempt=1, outcome=outcome,
        error_class="" if outcome == "ok" else "InternalServerError", tokens_in=tokens[0], tokens_out=tokens[1],
        cost_cents=Decimal(cost), latency_ms=12,
    )  # fmt: skip


def test_it_shows_the_totals_of_the_filtered_ledger_rows(admin_client):
    deployment = deployment_at("http://127.0.0.1:9/v1")
    _call(deployment, purpose="work", cost="0.875", tokens=(1500, 500))
    _call(deployment, purpose="work", cost="0.25", tokens=(1000, 0))
    _call(deployment, purpose="review", cost="7", tokens=(9, 9))
    response = admin_client.get(LEDGER, {"purpose__exact": "work"})
    assert response.status_code == 200
    totals = response.context["ledger_totals"]
    assert totals["cost_cents"] == Decimal("1.125")
    assert (totals["calls"], totals["tokens_in"], totals["tokens_out"]) == (2, 2500, 500)
    assert "cost $0.01125," in response.content.decode()


def test_it_counts_the_filtered_ledger_rows_and_their_totals_in_one_query(admin_client):
    deployment = deployment_at("http://127.0.0.1:9/v1")
    for purpose in ("work", "work", "review"):
        _call(deployment, purpose=purpose)
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(LEDGER, {"purpose__exact": "work"})
    table = connection.ops.quote_name(ModelCall._meta.db_table)
    counts = [q["sql"] for q in captured if "COUNT(" in q["sql"].upper() and table in q["sql"]]
    assert len(counts) == 1, counts  # each reads every filtered row (bench/admin_scale.py)
    assert (response.context["cl"].result_count, response.context["ledger_totals"]["calls"]) == (2, 2)


def test_it_filters_the_ledger_by_task(admin_client):
    deployment = deployment_at("http://127.0.0.1:9/v1")
    mine, other = TaskFactory(), TaskFactory()
    _call(deployment, task=mine, cost="1")
    _call(deployment, task=other, cost="2")
    response = admin_client.get(LEDGER, {"task__id__exact": mine.pk})
    assert response.status_code == 200
    assert response.context["ledger_totals"]["cost_cents"] == Decimal("1")


def test_it_renders_the_ledger_with_a_query_count_that_does_not_grow_with_rows(admin_client):
    deployment = deployment_at("http://127.0.0.1:9/v1")
    _call(deployment, task=TaskFactory())

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(LEDGER).status_code == 200
        return len(captured)

    few = queries()
    for _ in range(30):
        _call(deployment_at(f"http://127.0.0.1:9/v{_}", model=f"m{_}"), task=TaskFactory())
    assert queries() == few


def test_it_shows_each_deployments_live_breaker(admin_client):
    deployment = deployment_at("http://127.0.0.1:9/v1")
    BreakerState.objects.create(deployment=deployment, status="open", failures=3, changed_at=timezone.now())
    response = admin_client.get("/admin/agency/modeldeployment/")
    assert response.status_code == 200
    assert ">Open<" in response.content.decode()


def test_it_resets_a_breaker_from_the_admin_through_the_service(admin_client, admin_user):
    deployment = deployment_at("http://127.0.0.1:9/v1")
    BreakerState.objects.create(deployment=deployment, status="open", failures=3, changed_at=timezone.now())
    response = admin_client.post(
        "/admin/agency/modeldeployment/", {"action": "reset_breaker", "_selected_action": [deployment.pk]}
    )
    assert response.status_code == 302
    state = BreakerState.objects.get(deployment=deployment)
    assert (state.status, state.failures) == ("closed", 0)
    event = BreakerEvent.objects.get()
    assert (event.from_status, event.to_status, event.actor) == ("open", "closed", f"admin:user:{admin_user.pk}")


def test_it_edits_a_routes_deployments_in_order(admin_client):
    first, second = deployment_at("http://127.0.0.1:9/v1", model="a"), deployment_at("http://127.0.0.1:9/v2", model="b")
    route = route_of(first, second)
    response = admin_client.get(f"/admin/agency/route/{route.pk}/change/")
    assert response.status_code == 200
    inline = response.context["inline_admin_formsets"][0]
    assert [form.original.deployment for form in inline if form.original] == [first, second]
    assert admin_client.get("/admin/agency/provider/").status_code == 200
    assert admin_client.get("/admin/agency/route/").status_code == 200


def test_it_never_lets_an_operator_edit_the_ledger(admin_client):
    row = _call(deployment_at("http://127.0.0.1:9/v1"))
    assert admin_client.get(f"/admin/agency/modelcall/{row.pk}/change/").status_code == 200  # view only
    response = admin_client.post(f"/admin/agency/modelcall/{row.pk}/change/", {"cost_cents": "0"})
    assert response.status_code == 403
    assert ModelCall.objects.get().cost_cents == Decimal("0.875")


def test_it_sums_the_ledger_only_once_a_filter_or_a_search_narrows_it(admin_client):
    deployment = deployment_at("http://127.0.0.1:9/v1")
    _call(deployment, purpose="work", cost="2")
    _call(deployment, purpose="review", cost="3")
    whole = admin_client.get(LEDGER, {"o": "1"})  # ordering narrows nothing
    assert whole.context["ledger_totals"] is None and whole.context["cl"].result_count == 2
    assert "Totals appear when the list is filtered or searched" in whole.content.decode()
    searched = admin_client.get(LEDGER, {"q": "0" * 32})
    assert searched.context["ledger_totals"]["calls"] == 0
    assert admin_client.get(LEDGER, {"purpose__exact": "review"}).context["ledger_totals"]["cost_cents"] == 3
