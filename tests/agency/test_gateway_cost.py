"""The cost a provider reports in `usage.cost`, read exactly (docs/gateway.md, the ledger)."""

import json
from decimal import Decimal

import pytest

from agency.gateway import gateway_complete
from agency.gateway.cost import call_cost, provider_cost_cents
from agency.models import ModelCall
from tests.agency.fake_openai import ok
from tests.agency.gateway_setup import deployment_at, route_of


def _reported(cost_json: str) -> Decimal | None:
    """`usage.cost` as written on the wire, parsed as the gateway parses a body (`parse_float=Decimal`)."""
    return provider_cost_cents(json.loads(f'{{"cost": {cost_json}}}', parse_float=Decimal))


def test_it_turns_a_cost_in_dollars_into_exact_cents():
    assert _reported("0.00000875") == Decimal("0.000875")


def test_it_reads_a_cost_written_as_an_integer():
    assert _reported("2") == Decimal(200)


def test_it_reads_a_cost_sent_as_numeric_text():
    assert _reported('"0.125"') == Decimal("12.5")


def test_it_reads_a_cost_of_zero_as_a_report_of_zero_cents():
    assert _reported("0") == Decimal(0)
    assert _reported("0.0") == Decimal(0)


def test_it_takes_a_missing_cost_as_no_report():
    assert provider_cost_cents({}) is None


@pytest.mark.parametrize("cost_json", ["null", "true", "false", '"free"', "[1]", '{"usd": 1}'])
def test_it_takes_a_cost_that_is_not_a_number_as_no_report(cost_json):
    assert _reported(cost_json) is None


@pytest.mark.parametrize("cost_json", ["NaN", "Infinity", "-Infinity", '"NaN"', '"Infinity"', '"sNaN"'])
def test_it_takes_a_cost_that_is_not_finite_as_no_report(cost_json):
    assert _reported(cost_json) is None


@pytest.mark.parametrize("cost_json", ["-0.00000875", "-1", '"-0.5"'])
def test_it_takes_a_negative_cost_as_no_report(cost_json):
    assert _reported(cost_json) is None


@pytest.mark.django_db
@pytest.mark.usefixtures("fast_gateway")
def test_it_stores_a_reported_cost_of_zero_as_zero_cents(fake_openai):
    fake_openai.then(ok(cost="0"))  # a free model on OpenRouter reports 0, not nothing
    gateway_complete(
        purpose="work", route=route_of(deployment_at(fake_openai.url)), messages=[{"role": "user", "content": "hi"}]
    )
    assert ModelCall.objects.get().provider_cost_cents == Decimal(0)


@pytest.mark.django_db
def test_a_call_costs_its_input_output_and_gpu_time_together(fake_openai):
    deployment = deployment_at(fake_openai.url, gpu_second_cents=Decimal("0.5"))  # 250 / 1000 ¢ per 1M tokens
    cost = call_cost(deployment=deployment, tokens_in=1500, tokens_out=500, latency_ms=2000)
    assert cost == Decimal("0.375") + Decimal("0.5") + Decimal("1.0")
    assert call_cost(deployment=deployment, tokens_in=0, tokens_out=0, latency_ms=0) == 0
