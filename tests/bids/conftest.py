"""Fixtures of the bids tests."""

import pytest

from tests.agency.conftest import fake_openai, fast_gateway, second_fake_openai  # noqa: F401  (the gateway's fixtures, shared)
from tests.bids.factories import skilled_domain


@pytest.fixture
def domains(db):
    """The seeded domains with the skills their migration gives them."""
    return {slug: skilled_domain(slug) for slug in ("data_analysis", "legal", "accounting")}


@pytest.fixture
def fast_marketplaces(settings):
    settings.MARKETPLACE_HTTP_TIMEOUT_SECONDS = 2
    settings.MARKETPLACE_BREAKER_FAILURES = 3
    settings.BID_RESUBMIT_GRACE_SECONDS = 60
    return settings


FREELANCER_TOKEN_ENV = "MARKETPLACE_FREELANCER_TOKEN"


@pytest.fixture
def freelancer_server():
    from tests.bids.fake_marketplaces import FakeFreelancer

    with FakeFreelancer() as server:
        yield server


@pytest.fixture
def freelancer(db, freelancer_server, monkeypatch, domains):
    """A live (not training) Freelancer marketplace at the loopback server, its token in the environment."""
    from bids.models import Marketplace
    from tests.bids.fake_marketplaces import FREELANCER_TOKEN

    monkeypatch.setenv(FREELANCER_TOKEN_ENV, FREELANCER_TOKEN)
    return Marketplace.objects.create(
        slug="freelancer",
        name="Freelancer.com",
        kind=Marketplace.Kind.FREELANCER,
        base_url=freelancer_server.url,
        credential_env=FREELANCER_TOKEN_ENV,
        training_mode=False,
        search={"query": "", "limit": 50},
    )
