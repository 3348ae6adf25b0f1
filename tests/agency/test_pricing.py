"""Prices in cents (docs/tasks.md). Expected figures are worked out by hand from the rates there."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agency.pricing import discount_percent, price
from tests.agency.factories import ClientFactory, TaskFactory

# domain → complexity → urgency → cents
EXPECTED = {
    "accounting": {
        "simple": {"standard": 10000, "rush": 12500, "urgent": 15000},
        "medium": {"standard": 15000, "rush": 18750, "urgent": 22500},
        "complex": {"standard": 20000, "rush": 25000, "urgent": 30000},
    },
    "legal": {
        "simple": {"standard": 17500, "rush": 21875, "urgent": 26250},
        "medium": {"standard": 26250, "rush": 32813, "urgent": 39375},  # 32 812.5 rounds half up
        "complex": {"standard": 35000, "rush": 43750, "urgent": 52500},
    },
    "data_analysis": {
        "simple": {"standard": 15000, "rush": 18750, "urgent": 22500},
        "medium": {"standard": 22500, "rush": 28125, "urgent": 33750},
        "complex": {"standard": 30000, "rush": 37500, "urgent": 45000},
    },
}
CASES = [(d, c, u, cents) for d, by_c in EXPECTED.items() for c, by_u in by_c.items() for u, cents in by_u.items()]
COMPLEXITIES = ["simple", "medium", "complex"]
URGENCIES = ["standard", "rush", "urgent"]


@pytest.mark.django_db
@pytest.mark.parametrize(("domain", "complexity", "urgency", "cents"), CASES)
def test_it_quotes_all_27_prices(api, issue_key, domain, complexity, urgency, cents):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_key()}")
    body = api.get("/api/v1/quote", {"domain": domain, "complexity": complexity, "urgency": urgency}).json()
    assert body["price_cents"] == body["base_price_cents"] == cents
    assert body["discount_cents"] == 0
    assert (body["domain"], body["complexity"], body["urgency"]) == (domain, complexity, urgency)
    assert body["is_high_value"] is (cents >= 20000)


@pytest.mark.parametrize(("completed", "percent"), [(0, 0), (1, 5), (2, 10), (4, 10), (5, 15), (9, 15)])
def test_it_gives_repeat_clients_their_tier(completed, percent):
    assert discount_percent(completed) == percent


def test_it_rounds_a_discount_half_up_to_the_cent():
    # legal, medium, rush: 32 813; 5 % of it is 1 640.65 → 1 641
    assert price(base_rate_cents=17500, complexity="medium", urgency="rush", completed_tasks=1) == (
        32813,
        5,
        1641,
        31172,
    )


@pytest.mark.django_db
def test_it_quotes_the_discount_of_the_clients_completed_tasks(read_client):
    client = ClientFactory(email="Repeat@Example.com")
    TaskFactory.create_batch(2, client=client, status="completed")
    TaskFactory.create_batch(3, client=client, status="failed")  # only completed tasks count
    TaskFactory.create_batch(5, client=ClientFactory(email="other@example.com"), status="completed")  # not ours
    body = read_client.get("/api/v1/quote", {"domain": "legal", "client_email": "repeat@example.com"}).json()
    assert (body["base_price_cents"], body["discount_percent"], body["discount_cents"]) == (26250, 10, 2625)
    assert body["price_cents"] == 23625


@pytest.mark.django_db
def test_it_refuses_an_unknown_domain(read_client):
    response = read_client.get("/api/v1/quote", {"domain": "astrology"})
    assert response.status_code == 400
    assert "domain" in response.json()["errors"]


rates = st.integers(min_value=1, max_value=10_000_000)


@given(rates, st.sampled_from(URGENCIES), st.integers(min_value=0, max_value=50))
def test_it_never_lowers_the_price_for_more_complexity(rate, urgency, completed):
    prices = [
        price(base_rate_cents=rate, complexity=c, urgency=urgency, completed_tasks=completed)[3] for c in COMPLEXITIES
    ]
    assert prices == sorted(prices)


@given(rates, st.sampled_from(COMPLEXITIES), st.integers(min_value=0, max_value=50))
def test_it_never_lowers_the_price_for_more_urgency(rate, complexity, completed):
    prices = [
        price(base_rate_cents=rate, complexity=complexity, urgency=u, completed_tasks=completed)[3] for u in URGENCIES
    ]
    assert prices == sorted(prices)


@given(rates, st.sampled_from(COMPLEXITIES), st.sampled_from(URGENCIES), st.integers(min_value=0, max_value=50))
def test_it_keeps_the_discount_within_15_percent_and_the_price_within_base(rate, complexity, urgency, completed):
    base, percent, discount, final = price(
        base_rate_cents=rate, complexity=complexity, urgency=urgency, completed_tasks=completed
    )
    assert 0 <= percent <= 15
    assert 0 <= discount <= base * 0.15 + 0.5  # rounding to the cent may add half a cent
    assert final == base - discount <= base
    assert isinstance(final, int)


def test_it_refuses_an_unknown_complexity_by_name():
    with pytest.raises(ValueError) as refused:
        price(base_rate_cents=17500, complexity="huge", urgency="rush", completed_tasks=0)
    assert str(refused.value) == "Unknown complexity or urgency: 'huge'"
