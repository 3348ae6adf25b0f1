"""The Freelancer.com adapter against a loopback Freelancer (tests/bids/fake_marketplaces.py)."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from bids.marketplaces import adapter_for
from bids.marketplaces.base import FoundPosting, MarketplaceError, RemoteBid
from bids.marketplaces.freelancer import BIDS_PAGE_SIZE, FreelancerError
from tests.bids.conftest import FREELANCER_TOKEN_ENV
from tests.bids.fake_marketplaces import BIDS, FREELANCER_TOKEN, PROJECTS_ACTIVE, SELF, FakeFreelancer

TOKEN_ENV = FREELANCER_TOKEN_ENV


@pytest.fixture
def fake(freelancer_server):
    return freelancer_server


@pytest.fixture
def marketplace(freelancer):
    """The shared live marketplace at the fake (tests/bids/conftest.py), searching in small pages."""
    freelancer.search = {"query": "data", "limit": 2, "max_results": 10}
    freelancer.save(update_fields=["search"])
    return freelancer


@pytest.fixture
def adapter(marketplace):
    return adapter_for(marketplace)


def requests_to(fake: FakeFreelancer, method: str, path: str) -> list:
    return [r for r in fake.requests if (r.method, r.path) == (method, path)]


def place(adapter, project_id: int, amount_cents: int = 15000, key: str | None = None) -> str:
    return adapter.bid_place(
        posting_external_id=str(project_id),
        amount_cents=amount_cents,
        proposal="I have cleaned sales data for ten years.",
        idempotency_key=key or str(uuid.uuid4()),
    )


# --- Search ----------------------------------------------------------------------------------------


def test_it_maps_every_field_of_a_project(fake, adapter):
    description = "Clean three years of sales data and chart it by region. " * 5
    fake.project_add(
        "Sales data cleanup",
        description,
        project_id=39000001,
        seo_url="python/sales-data-cleanup",
        currency="EUR",
        budget=(30, 250.5),
        jobs=("Python", "Data Entry", "python"),
        time_submitted=1_767_323_045,  # 2026-01-02 03:04:05 UTC
    )

    assert adapter.search() == [
        FoundPosting(
            external_id="39000001",
            title="Sales data cleanup",
            description=description,  # the full text, not the 100-character preview
            url="https://www.freelancer.com/projects/python/sales-data-cleanup",
            budget_min_cents=3000,
            budget_max_cents=25050,
            currency="EUR",
            skills=("python", "data entry"),
            posted_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        )
    ]


def test_it_fills_a_missing_budget_end_from_the_other(fake, adapter):
    fake.project_add("Data entry", budget=(None, 80))

    [posting] = adapter.search()

    assert (posting.budget_min_cents, posting.budget_max_cents) == (8000, 8000)


def test_it_sends_the_token_and_the_search_parameters(fake, adapter):
    fake.project_add("Data entry")

    adapter.search()

    [request] = fake.requests
    assert request.headers["freelancer-oauth-v1"] == FREELANCER_TOKEN
    assert request.query == {
        "query": ["data"],
        "limit": ["2"],
        "offset": ["0"],
        "full_description": ["true"],
        "job_details": ["true"],
        "compact": ["true"],
    }


def test_it_reads_every_page(fake, adapter):
    for n in range(3):
        fake.project_add(f"Data job {n}", time_submitted=1_767_225_600 + n)

    titles = [posting.title for posting in adapter.search()]

    assert titles == ["Data job 2", "Data job 1", "Data job 0"]
    assert [r.arg("offset") for r in requests_to(fake, "GET", PROJECTS_ACTIVE)] == ["0", "2"]


def test_it_stops_at_max_results(fake, marketplace, adapter):
    marketplace.search = {"query": "data", "limit": 2, "max_results": 3}
    for n in range(7):
        fake.project_add(f"Data job {n}")

    assert len(adapter.search()) == 3
    assert len(requests_to(fake, "GET", PROJECTS_ACTIVE)) == 2


@pytest.mark.parametrize("status", [500, 429])
def test_it_retries_a_search_after_a_transient_error(fake, adapter, status):
    fake.project_add("Data entry")
    fake.fail_next(1, status=status)

    assert [posting.title for posting in adapter.search()] == ["Data entry"]
    assert len(fake.requests) == 2


def test_it_gives_up_after_three_transient_failures(fake, adapter):
    fake.fail_next(3, status=503)

    with pytest.raises(MarketplaceError) as raised:
        adapter.search()

    assert raised.value.transient
    assert raised.value.status_code == 503
    assert len(fake.requests) == 3


@pytest.mark.parametrize("status", [400, 403, 404])
def test_it_does_not_retry_a_refused_search(fake, adapter, status):
    fake.fail_next(1, status=status)

    with pytest.raises(MarketplaceError) as raised:
        adapter.search()

    assert not raised.value.transient
    assert raised.value.status_code == status
    assert len(fake.requests) == 1


def test_it_reports_a_wrong_token_as_not_transient(fake, adapter, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "a-revoked-token")

    with pytest.raises(FreelancerError) as raised:
        adapter.search()

    assert not raised.value.transient
    assert raised.value.status_code == 401
    assert raised.value.error_code == "AuthExceptionCodes.NOT_AUTHENTICATED"


# --- Placing a bid ---------------------------------------------------------------------------------


def test_it_places_a_bid_with_the_documented_body(fake, marketplace, adapter):
    marketplace.search = {**marketplace.search, "bid_period_days": 5}
    project = fake.project_add("Data entry")
    key = str(uuid.uuid4())

    remote_id = place(adapter, project["id"], amount_cents=12550, key=key)

    assert fake.placements == [
        {
            "project_id": project["id"],
            "bidder_id": fake.user_id,
            "amount": 125.5,
            "period": 5,
            "milestone_percentage": 100,
            "description": "I have cleaned sales data for ten years.",
        }
    ]
    [request] = requests_to(fake, "POST", BIDS)
    assert request.headers["idempotency-key"] == key
    assert request.headers["freelancer-oauth-v1"] == FREELANCER_TOKEN
    assert remote_id == str(next(iter(fake.bids)))


def test_it_asks_who_we_are_once(fake, adapter):
    first, second = fake.project_add("Data one"), fake.project_add("Data two")

    place(adapter, first["id"])
    place(adapter, second["id"])

    assert len(requests_to(fake, "GET", SELF)) == 1
    assert len(fake.bids) == 2


def test_it_reports_a_duplicate_bid_distinctly(fake, adapter):
    project = fake.project_add("Data entry")
    place(adapter, project["id"])

    with pytest.raises(FreelancerError) as raised:
        place(adapter, project["id"])

    assert raised.value.duplicate_bid
    assert raised.value.error_code == "ProjectExceptionCodes.DUPLICATE_BID"
    assert not raised.value.transient
    assert raised.value.status_code == 400
    assert len(fake.bids) == 1


def test_it_tells_a_duplicate_from_another_refusal(fake, adapter):
    with pytest.raises(FreelancerError) as raised:
        place(adapter, 99999)  # no such project

    assert not raised.value.duplicate_bid
    assert raised.value.error_code == "ProjectExceptionCodes.PROJECT_NOT_FOUND"
    assert not raised.value.transient


def test_it_does_not_retry_a_bid_after_a_500(fake, adapter):
    project = fake.project_add("Data entry")
    fake.fail_next(1, status=500, path=BIDS)

    with pytest.raises(MarketplaceError) as raised:
        place(adapter, project["id"])

    assert raised.value.transient
    assert raised.value.status_code == 500
    assert len(fake.placements) == 1


def test_it_does_not_retry_a_bid_whose_answer_was_lost(fake, adapter):
    project = fake.project_add("Data entry")
    fake.drop_after_record = True

    with pytest.raises(MarketplaceError) as raised:
        place(adapter, project["id"])

    # The bid exists remotely: only reconciliation may settle it, so this is not a refusal.
    assert raised.value.transient
    assert len(fake.placements) == 1
    assert len(fake.bids) == 1


def test_it_waits_for_the_answer_of_a_slow_placement(fake, adapter):
    project = fake.project_add("Data entry")
    fake.hold_bids.set()

    with ThreadPoolExecutor(1) as pool:
        placing = pool.submit(place, adapter, project["id"])
        assert fake.bid_held.wait(5)
        assert len(fake.bids) == 1  # recorded remotely while we still wait
        assert not placing.done()
        fake.hold_bids.clear()
        assert placing.result(timeout=5) == str(next(iter(fake.bids)))


def test_it_does_not_call_an_unreadable_success_a_refusal(fake, adapter):
    project = fake.project_add("Data entry")
    fake.garble_after_record = True

    with pytest.raises(MarketplaceError) as raised:
        place(adapter, project["id"])

    assert raised.value.transient
    assert len(fake.placements) == 1


def test_it_refuses_a_project_id_that_is_not_a_number(fake, adapter):
    with pytest.raises(MarketplaceError):
        adapter.bid_place(posting_external_id="abc", amount_cents=100, proposal="Hi.", idempotency_key="k")

    assert fake.placements == []


# --- Listing and retracting --------------------------------------------------------------------------


def test_it_maps_the_status_of_every_bid_over_two_pages(fake, adapter):
    for n in range(BIDS_PAGE_SIZE - 1):
        fake.bid_seed(project_id=5000 + n, amount=10)
    awarded = fake.bid_seed(project_id=7001, amount=99.99, award_status="awarded")
    rejected = fake.bid_seed(project_id=7002, amount=20, award_status="rejected")
    revoked = fake.bid_seed(project_id=7003, amount=20, award_status="revoked")
    offered = fake.bid_seed(project_id=7004, amount=20, award_status="pending")
    retracted = fake.bid_seed(project_id=7005, amount=20, retracted=True)

    bids = {bid.remote_id: bid for bid in adapter.bids_mine()}

    assert len(bids) == BIDS_PAGE_SIZE + 4
    assert bids[str(awarded)] == RemoteBid(str(awarded), "7001", 9999, "awarded")
    assert {bids[str(rejected)].status, bids[str(revoked)].status} == {"lost"}
    assert bids[str(offered)].status == "active"
    assert bids[str(retracted)].status == "retracted"
    listings = requests_to(fake, "GET", BIDS)
    assert [r.arg("offset") for r in listings] == ["0", str(BIDS_PAGE_SIZE)]
    assert {r.arg("bidders[]") for r in listings} == {str(fake.user_id)}


def test_it_lists_a_bid_it_placed(fake, adapter):
    project = fake.project_add("Data entry")
    remote_id = place(adapter, project["id"], amount_cents=4000)

    assert adapter.bids_mine() == [RemoteBid(remote_id, str(project["id"]), 4000, "active")]


def test_it_retracts_a_bid_twice_without_error(fake, adapter):
    project = fake.project_add("Data entry")
    remote_id = place(adapter, project["id"])

    adapter.bid_retract(remote_id=remote_id)
    adapter.bid_retract(remote_id=remote_id)

    assert [bid.status for bid in adapter.bids_mine()] == ["retracted"]
    retractions = [r for r in fake.requests if r.method == "PUT"]
    assert [(r.path, r.arg("action")) for r in retractions] == [(f"{BIDS}{remote_id}/", "retract")] * 2


def test_it_reports_retracting_an_unknown_bid(fake, adapter):
    with pytest.raises(FreelancerError) as raised:
        adapter.bid_retract(remote_id="123")

    assert raised.value.status_code == 404
    assert not raised.value.transient


# --- The token -------------------------------------------------------------------------------------

CALLS = {
    "search": lambda adapter: adapter.search(),
    "bid_place": lambda adapter: place(adapter, 1),
    "bids_mine": lambda adapter: adapter.bids_mine(),
    "bid_retract": lambda adapter: adapter.bid_retract(remote_id="1"),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_it_needs_its_token_before_any_request(fake, adapter, monkeypatch, call):
    monkeypatch.delenv(TOKEN_ENV)

    with pytest.raises(MarketplaceError, match=f"set {TOKEN_ENV}") as raised:
        call(adapter)

    assert not raised.value.transient
    assert fake.requests == []


@pytest.mark.parametrize("name", ["", "DATABASE_URL"])
def test_it_reads_a_token_only_from_a_marketplace_variable(fake, marketplace, monkeypatch, name):
    monkeypatch.setenv("DATABASE_URL", "postgres://secret@db/agency")
    marketplace.credential_env = name

    with pytest.raises(MarketplaceError, match="MARKETPLACE_") as raised:
        adapter_for(marketplace).search()

    assert not raised.value.transient
    assert fake.requests == []
