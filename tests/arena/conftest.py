"""Fixtures of the arena tests."""

import json

import pytest

from agency.models import AgentProfile
from tests.agency.conftest import fake_openai, fast_gateway, no_workers  # noqa: F401 (shared fixtures)
from tests.agency.fake_openai import ok
from tests.agency.gateway_setup import deployment_at, route_of
from tests.agency.pipeline_setup import APPROVED, BY_REGION


@pytest.fixture
def run_commits(django_capture_on_commit_callbacks):
    """Run what the code queues after its commits (the sides, then the join), as eager Celery does
    outside a test transaction."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def llm_incumbent(request):
    """An LLM profile routed first (priority 1) on a priced deployment at the fake server, whose
    plan, narrative and review calls are scripted; the seeded baseline (1000) is its challenger."""
    request.getfixturevalue("fast_gateway")
    server = request.getfixturevalue("fake_openai")
    deployment = deployment_at(server.url, price_in="250", price_out="1000")
    profile = AgentProfile.objects.create(name="llm", kind="llm", route=route_of(deployment), priority=1)
    server.then(
        *(ok(json.dumps(body) if isinstance(body, dict) else body) for body in (BY_REGION, "North leads.", APPROVED))
    )
    return profile
