"""The one-model set-up from AGENCY_MODEL_* (docs/gateway.md)."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from agency.gateway.configuration import gateway_configure_from_settings
from agency.models import ModelDeployment, Provider, Route, RouteStep
from tests.agency.gateway_setup import deployment_at

pytestmark = pytest.mark.django_db


@pytest.fixture
def model_env(settings):
    settings.AGENCY_MODEL_BASE_URL = "http://127.0.0.1:11434/v1"
    settings.AGENCY_MODEL_NAME = "llama3.1:8b"
    settings.AGENCY_MODEL_API_KEY_ENV = "OLLAMA_KEY"
    settings.AGENCY_MODEL_KIND = "local"
    settings.AGENCY_MODEL_PRICE_IN_CENTS_PER_1M = "250"
    settings.AGENCY_MODEL_PRICE_OUT_CENTS_PER_1M = "1000"
    return settings


def test_it_writes_nothing_when_no_model_is_configured():
    assert gateway_configure_from_settings() is None
    assert not Provider.objects.exists() and not Route.objects.exists()


def test_it_upserts_the_provider_deployment_and_default_route_idempotently(model_env):
    first = gateway_configure_from_settings()
    second = gateway_configure_from_settings()
    assert first.pk == second.pk
    assert (Provider.objects.count(), ModelDeployment.objects.count(), RouteStep.objects.count()) == (1, 1, 1)
    provider = Provider.objects.get()
    assert (provider.base_url, provider.api_key_env, provider.kind) == (
        "http://127.0.0.1:11434/v1",
        "OLLAMA_KEY",
        "local",
    )
    assert (second.price_in_cents_per_1m, second.price_out_cents_per_1m) == (Decimal("250"), Decimal("1000"))
    assert Route.objects.get().steps.get().deployment == second


def test_it_follows_a_changed_price_and_puts_a_new_model_first(model_env):
    gateway_configure_from_settings()
    other = deployment_at("http://127.0.0.1:9/v1", model="fallback")
    RouteStep.objects.create(route=Route.objects.get(name="default"), deployment=other, position=1)
    model_env.AGENCY_MODEL_PRICE_OUT_CENTS_PER_1M = "1200"
    model_env.AGENCY_MODEL_NAME = "qwen2.5:7b"
    new = gateway_configure_from_settings()
    steps = list(
        Route.objects.get(name="default").steps.order_by("position").values_list("deployment__model", flat=True)
    )
    assert steps == ["qwen2.5:7b", "llama3.1:8b", "fallback"]
    assert new.price_out_cents_per_1m == Decimal("1200")


def test_it_says_what_it_configured(model_env):
    out = StringIO()
    call_command("gateway_configure", stdout=out)
    assert "env/llama3.1:8b" in out.getvalue() and "priced" in out.getvalue()


def test_a_configured_model_puts_the_llm_agent_ahead_of_the_baseline_once(model_env):
    from agency.models import AgentProfile, Task
    from agency.pipeline import profile_for
    from tests.agency.factories import TaskFactory

    AgentProfile.objects.filter(name="llm").delete()
    gateway_configure_from_settings()
    gateway_configure_from_settings()
    llm = AgentProfile.objects.get(name="llm")
    assert (llm.kind, llm.active, llm.route, llm.domain) == ("llm", True, None, None)
    assert profile_for(task=TaskFactory(status=Task.Status.PAID)) == llm
