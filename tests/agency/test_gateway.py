"""The model gateway over real HTTP to a local OpenAI-compatible server (docs/gateway.md)."""

import os
import time
from decimal import Decimal

import pytest

from agency.gateway import GatewayConfigError, GatewayOutputInvalid, GatewayUnavailable, gateway_complete
from agency.gateway.selectors import task_model_cost
from agency.models import ModelCall
from tests.agency.factories import TaskFactory
from tests.agency.fake_openai import drop, ok, raw, status
from tests.agency.gateway_setup import deployment_at, route_of
from tracing.context import trace_started

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_gateway")]

HELLO = [{"role": "user", "content": "Say hello."}]


def _ask(route, **options):
    return gateway_complete(purpose=options.pop("purpose", "work"), route=route, messages=HELLO, **options)


# --- the ledger ---------------------------------------------------------------------------------


def test_it_costs_a_call_exactly_from_the_price_table(fake_openai):
    route = route_of(deployment_at(fake_openai.url, price_in="250", price_out="1000"))
    fake_openai.then(ok("Hi.", tokens_in=1500, tokens_out=500))
    completion = _ask(route)
    row = ModelCall.objects.get()
    assert completion.text == "Hi."
    assert (row.tokens_in, row.tokens_out) == (1500, 500)
    assert row.cost_cents == Decimal("0.875")
    assert str(row.cost_cents.normalize()) == "0.875"  # not 0.8749999…
    assert (row.outcome, row.error_class, row.attempt, row.purpose) == ("ok", "", 1, "work")


def test_it_stores_the_cost_the_provider_reported_beside_its_own(fake_openai):
    route = route_of(deployment_at(fake_openai.url))
    fake_openai.then(ok(tokens_in=1500, tokens_out=500, cost="0.00000875"))  # dollars, as OpenRouter sends
    _ask(route)
    row = ModelCall.objects.get()
    assert row.provider_cost_cents == Decimal("0.000875")
    assert row.cost_cents == Decimal("0.875")


def test_it_leaves_the_provider_cost_empty_when_the_answer_has_none(fake_openai):
    _ask(route_of(deployment_at(fake_openai.url)))
    assert ModelCall.objects.get().provider_cost_cents is None


def test_it_sums_a_tasks_model_cost_over_its_own_calls_only(fake_openai):
    route = route_of(deployment_at(fake_openai.url, price_in="250", price_out="1000"))
    mine, other = TaskFactory(), TaskFactory()
    fake_openai.then(
        ok(tokens_in=1500, tokens_out=500),  # 0.875
        ok(tokens_in=1000, tokens_out=0),  # 0.25
        ok(tokens_in=4000, tokens_out=4000),  # other task: 5
    )
    _ask(route, task=mine)
    _ask(route, task=mine, purpose="review")
    _ask(route, task=other)
    assert task_model_cost(task=mine) == Decimal("1.125")
    assert task_model_cost(task=other) == Decimal("5")
    assert list(ModelCall.objects.filter(task=mine).values_list("purpose", flat=True).order_by("id")) == [
        "work",
        "review",
    ]


def test_it_charges_a_local_model_by_the_gpu_second(fake_openai):
    deployment = deployment_at(fake_openai.url, price_in=None, price_out=None, gpu_second_cents=Decimal("2"))
    fake_openai.then(ok(delay=0.3))
    _ask(route_of(deployment))
    row = ModelCall.objects.get()
    assert row.latency_ms >= 300
    assert row.cost_cents == Decimal(row.latency_ms) * 2 / 1000


# --- configuration errors ----------------------------------------------------------------------


def test_it_refuses_a_deployment_without_a_price_before_any_request(fake_openai):
    priced = deployment_at(fake_openai.url, model="priced")
    unpriced = deployment_at(fake_openai.url, model="free-lunch", price_out=None)
    with pytest.raises(GatewayConfigError, match="free-lunch"):
        _ask(route_of(priced, unpriced))
    assert fake_openai.requests == []
    assert not ModelCall.objects.exists()


def test_it_refuses_a_provider_whose_key_variable_is_not_set(fake_openai, monkeypatch):
    deployment = deployment_at(fake_openai.url)
    deployment.provider.api_key_env = "AGENCY_TEST_MISSING_KEY"
    deployment.provider.save()
    monkeypatch.delenv("AGENCY_TEST_MISSING_KEY", raising=False)
    with pytest.raises(GatewayConfigError, match="AGENCY_TEST_MISSING_KEY"):
        _ask(route_of(deployment))
    assert fake_openai.requests == []


def test_it_sends_the_key_from_the_named_variable(fake_openai, monkeypatch):
    monkeypatch.setenv("AGENCY_TEST_MODEL_KEY", "sk-test-123")
    deployment = deployment_at(fake_openai.url)
    deployment.provider.api_key_env = "AGENCY_TEST_MODEL_KEY"
    deployment.provider.save()
    _ask(route_of(deployment))
    assert fake_openai.requests[0]["headers"]["authorization"] == "Bearer sk-test-123"


# --- what reaches the server -------------------------------------------------------------------


def test_it_sends_temperature_zero_and_the_deployments_model(fake_openai):
    _ask(route_of(deployment_at(fake_openai.url, model="llama-3-8b")))
    [request] = fake_openai.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["json"]["temperature"] == 0
    assert request["json"]["model"] == "llama-3-8b"
    assert request["json"]["messages"] == HELLO


def test_it_carries_the_callers_trace_to_the_server_and_onto_every_ledger_row(fake_openai, second_fake_openai):
    route = route_of(deployment_at(fake_openai.url, model="a"), deployment_at(second_fake_openai.url, model="b"))
    fake_openai.default = status(503)
    with trace_started("caller") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        _ask(route)
    rows = ModelCall.objects.order_by("attempt")
    assert [r.outcome for r in rows] == ["error", "error", "error", "ok"]
    assert {r.trace_id for r in rows} == {trace_id}
    requests = fake_openai.requests + second_fake_openai.requests
    assert len(requests) == 4
    assert all(r["headers"]["traceparent"].split("-")[1] == trace_id for r in requests)


# --- retries and fallbacks ---------------------------------------------------------------------


def test_it_retries_a_5xx_on_the_same_deployment_until_it_answers(fake_openai, second_fake_openai):
    route = route_of(deployment_at(fake_openai.url, model="a"), deployment_at(second_fake_openai.url, model="b"))
    fake_openai.then(status(500), status(502), ok("third time"))
    completion = _ask(route)
    assert completion.text == "third time"
    assert len(fake_openai.requests) == 3 and second_fake_openai.requests == []
    rows = list(ModelCall.objects.order_by("attempt").values_list("attempt", "outcome", "status_code", "deployment"))
    a = completion.deployment.pk
    assert rows == [(1, "error", 500, a), (2, "error", 502, a), (3, "ok", None, a)]


def test_it_moves_to_the_next_deployment_after_the_retries_are_spent(fake_openai, second_fake_openai):
    first, second = deployment_at(fake_openai.url, model="a"), deployment_at(second_fake_openai.url, model="b")
    fake_openai.default = status(503)
    completion = _ask(route_of(first, second))
    assert completion.deployment == second
    assert len(fake_openai.requests) == 3  # 1 + GATEWAY_RETRIES
    assert list(ModelCall.objects.order_by("attempt").values_list("attempt", "deployment_id", "outcome")) == [
        (1, first.pk, "error"),
        (2, first.pk, "error"),
        (3, first.pk, "error"),
        (4, second.pk, "ok"),
    ]


def test_it_treats_a_timeout_as_transient_then_falls_back(fake_openai, second_fake_openai, settings):
    settings.GATEWAY_TIMEOUT_SECONDS = 0.2
    settings.GATEWAY_RETRIES = 1
    first, second = deployment_at(fake_openai.url, model="a"), deployment_at(second_fake_openai.url, model="b")
    fake_openai.default = ok(delay=1.0)
    started = time.perf_counter()
    completion = _ask(route_of(first, second))
    elapsed = time.perf_counter() - started
    assert completion.deployment == second
    assert len(fake_openai.requests) == 2
    assert elapsed < 1.0  # neither attempt waited for the slow answer
    errors = ModelCall.objects.filter(deployment=first).values_list("error_class", flat=True)
    assert list(errors) == ["APITimeoutError", "APITimeoutError"]


def test_it_does_not_retry_a_401_and_asks_the_next_deployment_at_once(fake_openai, second_fake_openai):
    first, second = deployment_at(fake_openai.url, model="a"), deployment_at(second_fake_openai.url, model="b")
    fake_openai.default = status(401)
    completion = _ask(route_of(first, second))
    assert completion.deployment == second
    assert len(fake_openai.requests) == 1
    row = ModelCall.objects.get(deployment=first)
    assert (row.outcome, row.status_code, row.error_class) == ("error", 401, "AuthenticationError")


def test_it_waits_as_long_as_a_429s_retry_after_asks(fake_openai, settings):
    settings.GATEWAY_RETRY_AFTER_MAX_SECONDS = 5
    fake_openai.then(status(429, headers={"Retry-After": "0.6"}), ok("after the wait"))
    started = time.perf_counter()
    completion = _ask(route_of(deployment_at(fake_openai.url)))
    assert time.perf_counter() - started >= 0.6
    assert completion.text == "after the wait"
    assert list(ModelCall.objects.order_by("attempt").values_list("status_code", flat=True)) == [429, None]


def test_it_falls_back_at_once_when_retry_after_exceeds_the_cap(fake_openai, second_fake_openai, settings):
    settings.GATEWAY_RETRY_AFTER_MAX_SECONDS = 0.5
    first, second = deployment_at(fake_openai.url, model="a"), deployment_at(second_fake_openai.url, model="b")
    fake_openai.then(status(429, headers={"Retry-After": "30"}))
    started = time.perf_counter()
    completion = _ask(route_of(first, second))
    assert time.perf_counter() - started < 0.5
    assert completion.deployment == second
    assert len(fake_openai.requests) == 1


def test_it_retries_a_dropped_connection_and_a_malformed_body(fake_openai):
    fake_openai.then(drop(), raw(b"<html>502 from a proxy</html>"), ok("fine"))
    assert _ask(route_of(deployment_at(fake_openai.url))).text == "fine"
    assert list(ModelCall.objects.order_by("attempt").values_list("outcome", "error_class")) == [
        ("error", "APIConnectionError"),
        ("error", "_MalformedAnswer"),
        ("ok", ""),
    ]


def test_it_raises_unavailable_when_every_deployment_fails(fake_openai, second_fake_openai):
    fake_openai.default = second_fake_openai.default = status(500)
    route = route_of(deployment_at(fake_openai.url, model="a"), deployment_at(second_fake_openai.url, model="b"))
    with pytest.raises(GatewayUnavailable) as raised:
        _ask(route)
    assert len(raised.value.attempts) == 2
    assert ModelCall.objects.filter(outcome="error").count() == 6


# --- structured output -------------------------------------------------------------------------

VERDICT = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}, "notes": {"type": "string"}},
    "required": ["approved", "notes"],
    "additionalProperties": False,
}


def test_it_returns_the_parsed_answer_when_it_matches_the_schema(fake_openai):
    fake_openai.then(ok('{"approved": true, "notes": "fine"}'))
    completion = _ask(route_of(deployment_at(fake_openai.url)), response_schema=VERDICT, purpose="review")
    assert completion.data == {"approved": True, "notes": "fine"}
    sent = fake_openai.requests[0]["json"]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == VERDICT


@pytest.mark.parametrize(
    "answer",
    [
        "__import__('os').system('touch {marker}')",
        '{"approved": "yes", "notes": "wrong type"}',
        '{"approved": true}',
        'Sure! Here is the JSON: {"approved": true, "notes": ""}',
    ],
)
def test_it_fails_closed_on_an_answer_that_does_not_match_the_schema(fake_openai, second_fake_openai, tmp_path, answer):
    marker = tmp_path / "pwned"
    fake_openai.then(ok(answer.replace("{marker}", str(marker))))
    route = route_of(deployment_at(fake_openai.url, model="a"), deployment_at(second_fake_openai.url, model="b"))
    with pytest.raises(GatewayOutputInvalid) as raised:
        _ask(route, response_schema=VERDICT, purpose="review")
    assert not os.path.exists(marker)
    row = ModelCall.objects.get()
    assert row.pk == raised.value.model_call_id
    assert (row.outcome, row.error_class) == ("invalid_output", "GatewayOutputInvalid")
    assert row.cost_cents > 0  # the provider was paid for it all the same
    assert second_fake_openai.requests == []  # no fallback: the caller decides what to do


def test_it_refuses_an_invalid_schema_before_any_request(fake_openai):
    with pytest.raises(GatewayConfigError, match="JSON Schema"):
        _ask(route_of(deployment_at(fake_openai.url)), response_schema={"type": "no-such-type"})
    assert fake_openai.requests == []
