"""The ledger over the API and the gateway in /healthz (docs/gateway.md, docs/api.md)."""

from decimal import Decimal

import pytest
from django.utils import timezone

from agency.models import BreakerState, ModelCall
from tests.agency.factories import TaskFactory
from tests.agency.gateway_setup import deployment_at, route_of

pytestmark = pytest.mark.django_db

URL = "/api/v1/model-calls"


def _call(deployment, **fields):
    values = {"purpose": "work", "attempt": 1, "outcome": "ok", "error_class": "", "latency_ms": 5,
              "cost_cents": Decimal("0.875"), "tokens_in": 1500, "tokens_out": 500, **fields}  # fmt: skip
    return ModelCall.objects.create(deployment=deployment, **values)


def test_it_lists_the_ledger_with_the_cost_as_an_exact_decimal_string(read_client):
    deployment = deployment_at("http://127.0.0.1:9/v1")
    _call(deployment, cost_cents=Decimal("0.875"), provider_cost_cents=Decimal("0.000875"))
    response = read_client.get(URL)
    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["cost_cents"] == "0.8750000000"
    assert Decimal(row["cost_cents"]) == Decimal("0.875")
    assert Decimal(row["provider_cost_cents"]) == Decimal("0.000875")
    assert (row["tokens_in"], row["tokens_out"], row["deployment_id"]) == (1500, 500, deployment.pk)


def test_it_filters_the_ledger(read_client):
    a, b = deployment_at("http://127.0.0.1:9/v1", model="a"), deployment_at("http://127.0.0.1:9/v2", model="b")
    mine, other = TaskFactory(), TaskFactory()
    kept = _call(a, task=mine, purpose="review", outcome="error", error_class="InternalServerError")
    _call(a, task=mine, purpose="review")  # outcome ok
    _call(a, task=other, purpose="review", outcome="error", error_class="InternalServerError")
    _call(b, task=mine, purpose="review", outcome="error", error_class="InternalServerError")
    _call(a, task=mine, purpose="work", outcome="error", error_class="InternalServerError")
    query = {"task": mine.pk, "deployment": a.pk, "purpose": "review", "outcome": "error"}
    assert [r["id"] for r in read_client.get(URL, query).json()["results"]] == [kept.pk]


def test_it_filters_the_ledger_by_time(read_client):
    deployment = deployment_at("http://127.0.0.1:9/v1")
    old, new = _call(deployment), _call(deployment)
    ModelCall.objects.filter(pk=old.pk).update(created_at=timezone.now() - timezone.timedelta(days=2))
    cutoff = (timezone.now() - timezone.timedelta(days=1)).isoformat()
    assert [r["id"] for r in read_client.get(URL, {"created_after": cutoff}).json()["results"]] == [new.pk]
    assert [r["id"] for r in read_client.get(URL, {"created_before": cutoff}).json()["results"]] == [old.pk]


def test_it_refuses_the_ledger_to_anonymous_callers(api):
    assert api.get(URL).status_code in (401, 403)


def _healthz_gateway(client) -> tuple[int, dict, str]:
    response = client.get("/healthz")
    body = response.json()
    return response.status_code, body["checks"]["model_gateway"], body["status"]


def test_it_reports_the_gateway_ok_with_every_breaker_closed(client):
    route_of(deployment_at("http://127.0.0.1:9/v1"))
    code, gateway, status = _healthz_gateway(client)
    assert (code, gateway["status"], status) == (200, "ok", "ok")


def test_it_reports_the_gateway_degraded_when_a_breaker_is_open(client):
    first, second = deployment_at("http://127.0.0.1:9/v1", model="a"), deployment_at("http://127.0.0.1:9/v2", model="b")
    route_of(first, second)
    BreakerState.objects.create(deployment=first, status="open", failures=3, changed_at=timezone.now())
    code, gateway, status = _healthz_gateway(client)
    assert (code, gateway["status"], gateway["open_breakers"], status) == (200, "degraded", 1, "degraded")


def test_it_reports_the_gateway_down_when_every_deployment_of_a_route_is_open(client):
    first, second = deployment_at("http://127.0.0.1:9/v1", model="a"), deployment_at("http://127.0.0.1:9/v2", model="b")
    route_of(first, second, name="review")
    route_of(second, name="other")
    for deployment in (first, second):
        BreakerState.objects.create(deployment=deployment, status="open", failures=3, changed_at=timezone.now())
    code, gateway, status = _healthz_gateway(client)
    assert (gateway["status"], gateway["routes_down"], status) == ("down", ["other", "review"], "degraded")
    assert code == 200  # a provider's outage is no reason to take this instance out of the balancer


@pytest.mark.single_pass  # SQLite: the DROP is rolled back with the test's transaction
def test_it_leaves_database_failures_to_the_database_check(client):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE agency_breakerstate")  # an unmigrated database answers SELECT 1 all the same
    code, gateway, _ = _healthz_gateway(client)
    assert (code, gateway["ok"], gateway["status"], gateway["error"]) == (200, True, "unknown", "OperationalError")


@pytest.mark.parametrize("value", ["-1.7976931348623157e+308", "99999999999999999999999", "1.5", "0"])
def test_it_answers_400_to_an_id_filter_no_row_can_have(read_client, value):
    for name in ("task", "deployment"):
        response = read_client.get("/api/v1/model-calls", {name: value})
        assert response.status_code == 400, (name, value, response.content)
