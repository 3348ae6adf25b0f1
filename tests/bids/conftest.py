"""Fixtures of the bids tests."""

import pytest

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
