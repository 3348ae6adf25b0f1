"""The Upwork adapter (search only) against a loopback Upwork GraphQL API (tests/bids/fake_marketplaces.py)."""

from datetime import UTC, datetime

import pytest

from bids.marketplaces import adapter_for
from bids.marketplaces.base import BidsByHand, FoundPosting, MarketplaceError
from bids.models import Marketplace
from tests.bids.fake_marketplaces import UPWORK_TOKEN, FakeUpwork, FakeUpworkJob

TOKEN_ENV = "MARKETPLACE_UPWORK_TOKEN"


@pytest.fixture
def fake():
    with FakeUpwork() as server:
        yield server


@pytest.fixture
def marketplace(db, fake, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, UPWORK_TOKEN)
    return Marketplace.objects.create(
        slug="upwork",
        name="Upwork",
        kind=Marketplace.Kind.UPWORK,
        base_url=fake.url,
        credential_env=TOKEN_ENV,
        search={"query": "data", "limit": 2, "max_results": 10},
    )


@pytest.fixture
def adapter(marketplace):
    return adapter_for(marketplace)


def pagination(request) -> dict:
    [search] = request.json["variables"].values()
    return search["pagination_eq"]


def test_it_maps_a_fixed_price_job(fake, adapter):
    fake.jobs.append(
        FakeUpworkJob(
            id="1799000000000000001",
            title="Sales data dashboard",
            description="Build a dashboard of our sales data.",
            ciphertext="~01abcdef",
            amount="450.00",
            currency="EUR",
            skills=("Python", "Data Visualization", "python"),
            created="2026-01-02T03:04:05.000Z",
        )
    )

    assert adapter.search() == [
        FoundPosting(
            external_id="1799000000000000001",
            title="Sales data dashboard",
            description="Build a dashboard of our sales data.",
            url="https://www.upwork.com/jobs/~01abcdef",
            budget_min_cents=45000,
            budget_max_cents=45000,
            currency="EUR",
            skills=("python", "data visualization"),
            posted_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        )
    ]


def test_it_maps_an_hourly_job_to_its_rate_range(fake, adapter):
    fake.jobs.append(FakeUpworkJob(id="2", title="Data analyst", amount="0.0", hourly_min="25.0", hourly_max="60.5"))

    [posting] = adapter.search()

    assert (posting.budget_min_cents, posting.budget_max_cents) == (2500, 6050)


def test_it_writes_a_ciphertext_without_its_tilde_into_the_url(fake, adapter):
    fake.jobs.append(FakeUpworkJob(id="3", title="Data entry", ciphertext="01fedcba"))

    [posting] = adapter.search()

    assert posting.url == "https://www.upwork.com/jobs/~01fedcba"


def test_it_sends_the_bearer_token_and_the_search_expression(fake, adapter):
    adapter.search()

    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/graphql")
    assert request.headers["authorization"] == f"Bearer {UPWORK_TOKEN}"
    assert "marketplaceJobPostingsSearch" in request.json["query"]
    [search] = request.json["variables"].values()
    assert search == {"searchExpression_eq": "data", "pagination_eq": {"first": 2}}


def test_it_reads_the_next_page_after_the_end_cursor(fake, adapter):
    fake.jobs += [FakeUpworkJob(id=str(n), title=f"Data job {n}") for n in range(3)]

    assert [posting.external_id for posting in adapter.search()] == ["0", "1", "2"]

    first, second = (pagination(request) for request in fake.requests)
    assert "after" not in first
    assert second["after"] == fake.replies[0].body["data"]["marketplaceJobPostingsSearch"]["pageInfo"]["endCursor"]


def test_it_stops_at_max_results(fake, marketplace, adapter):
    marketplace.search = {"query": "data", "limit": 2, "max_results": 3}
    fake.jobs += [FakeUpworkJob(id=str(n), title=f"Data job {n}") for n in range(7)]

    assert len(adapter.search()) == 3
    assert len(fake.requests) == 2


def test_it_raises_graphql_errors_without_retrying(fake, adapter):
    fake.graphql_errors("The client does not have the required scope: Read marketplace Job Postings")

    with pytest.raises(MarketplaceError, match="required scope") as raised:
        adapter.search()

    assert not raised.value.transient
    assert len(fake.requests) == 1


def test_it_retries_a_search_after_a_503(fake, adapter):
    fake.jobs.append(FakeUpworkJob(id="1", title="Data entry"))
    fake.fail_next(1, status=503)

    assert [posting.external_id for posting in adapter.search()] == ["1"]
    assert len(fake.requests) == 2


def test_it_reports_a_wrong_token_as_not_transient(fake, adapter, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "an-expired-token")

    with pytest.raises(MarketplaceError) as raised:
        adapter.search()

    assert raised.value.status_code == 401
    assert not raised.value.transient


def test_it_needs_its_token_before_any_request(fake, adapter, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV)

    with pytest.raises(MarketplaceError, match=f"set {TOKEN_ENV}") as raised:
        adapter.search()

    assert not raised.value.transient
    assert fake.requests == []


CALLS = {
    "bid_place": lambda adapter: adapter.bid_place(
        posting_external_id="1", amount_cents=100, proposal="Hi.", idempotency_key="k"
    ),
    "bids_mine": lambda adapter: adapter.bids_mine(),
    "bid_retract": lambda adapter: adapter.bid_retract(remote_id="1"),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_it_leaves_bids_to_an_operator(fake, adapter, call):
    with pytest.raises(BidsByHand):
        call(adapter)

    assert fake.requests == []
