"""Fixtures of the agency tests: local model servers for the gateway."""

import pytest

from tests.agency.fake_openai import FakeOpenAI


@pytest.fixture
def fake_openai():
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
def second_fake_openai():
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
def fast_gateway(settings):
    """No backoff between retries, short timeouts: the tests wait only where they measure waiting."""
    settings.GATEWAY_BACKOFF_SECONDS = 0
    settings.GATEWAY_TIMEOUT_SECONDS = 0.5
    settings.GATEWAY_RETRIES = 2
    settings.GATEWAY_BREAKER_FAILURES = 3
    settings.GATEWAY_BREAKER_COOLDOWN_SECONDS = 60
    settings.GATEWAY_ROUTE_CACHE_SECONDS = 0  # each test's routes as it wrote them
    return settings


@pytest.fixture
def no_workers():
    """Hand-overs go to the in-memory broker, where no worker consumes them: a paid task stays
    `paid` after its creation commits, as when its message is lost or no worker is running."""
    from agency.celery import app

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = eager
