"""Posting and bid endpoints (docs/bids.md, docs/api.md)."""

import pytest

from agency.models import ApiKey
from bids.models import Bid, Posting
from tests.bids.factories import BidFactory, MarketplaceFactory, PostingFactory
from tests.conftest import client_with_key

pytestmark = pytest.mark.django_db
BIDS = "/api/v1/bids"


@pytest.fixture
def writer(issue_key):
    return client_with_key(issue_key(ApiKey.Scope.WRITE))


def test_it_makes_a_bid_once_and_answers_a_second_with_the_live_bids_id(writer, domains):
    posting = PostingFactory(proposed_cents=14000)
    first = writer.post(BIDS, {"posting": posting.pk}, format="json")
    second = writer.post(BIDS, {"posting": posting.pk, "amount_cents": 9000}, format="json")
    assert first.status_code == 201
    assert (first.json()["status"], first.json()["amount_cents"]) == ("draft", 14000)
    assert second.status_code == 409
    assert second.json()["id"] == first.json()["id"]
    assert Bid.objects.count() == 1


def test_it_takes_an_amount_and_a_proposal(writer, domains):
    posting = PostingFactory(budget_max_cents=20000)
    made = writer.post(
        BIDS, {"posting": posting.pk, "amount_cents": 18000, "proposal": "Done by Friday."}, format="json"
    )
    assert made.status_code == 201
    bid = Bid.objects.get(pk=made.json()["id"])
    assert (bid.amount_cents, bid.proposal) == (18000, "Done by Friday.")
    assert bid.events.get().actor.startswith("api:key:")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount_cents": 2000}, "amount_cents"),
        ({"amount_cents": 25000}, "amount_cents"),  # above the budget
        ({"posting": 999999}, "posting"),
    ],
)
def test_it_refuses_bad_input_with_the_field_named(writer, domains, body, field):
    posting = PostingFactory(budget_max_cents=20000)
    answer = writer.post(BIDS, {"posting": posting.pk, **body}, format="json")
    assert answer.status_code == 400
    assert field in answer.json()["errors"]
    assert not Bid.objects.exists()


def test_it_replays_a_repeated_idempotency_key(writer, domains):
    posting = PostingFactory()
    first = writer.post(BIDS, {"posting": posting.pk}, format="json", HTTP_IDEMPOTENCY_KEY="bid-1")
    again = writer.post(BIDS, {"posting": posting.pk}, format="json", HTTP_IDEMPOTENCY_KEY="bid-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_read_key_cannot_bid(read_client, domains):
    assert read_client.post(BIDS, {"posting": PostingFactory().pk}, format="json").status_code == 403
    assert not Bid.objects.exists()


def test_it_lists_postings_by_marketplace_and_decision(read_client, domains):
    here, there = MarketplaceFactory(slug="here"), MarketplaceFactory(slug="there")
    wanted = PostingFactory(marketplace=here, decision=Posting.Decision.BID)
    PostingFactory(marketplace=here, decision=Posting.Decision.SKIP)
    PostingFactory(marketplace=there, decision=Posting.Decision.BID)
    answer = read_client.get("/api/v1/postings", {"marketplace": "here", "decision": "bid"})
    assert answer.status_code == 200
    assert [row["id"] for row in answer.json()["results"]] == [wanted.pk]
    row = answer.json()["results"][0]
    assert (row["marketplace"], row["domain"], row["proposed_cents"]) == ("here", "data_analysis", 15000)


def test_it_lists_bids_by_status(read_client, domains):
    draft = BidFactory(status=Bid.Status.DRAFT)
    BidFactory(status=Bid.Status.SUBMITTED)
    answer = read_client.get(BIDS, {"status": "draft"})
    assert [row["id"] for row in answer.json()["results"]] == [draft.pk]


def test_an_operator_approves_a_draft_once(operator_client, domains, django_capture_on_commit_callbacks):
    bid = BidFactory(posting=PostingFactory(marketplace=MarketplaceFactory(training_mode=True)))
    with django_capture_on_commit_callbacks(execute=True):
        approved = operator_client.post(f"{BIDS}/{bid.pk}/approve")
    assert approved.status_code == 200
    assert Bid.objects.get(pk=bid.pk).status == Bid.Status.SIMULATED
    again = operator_client.post(f"{BIDS}/{bid.pk}/approve")
    assert again.status_code == 409
    assert again.json()["id"] == bid.pk


def test_an_operator_withdraws_once(operator_client, domains):
    bid = BidFactory(status=Bid.Status.DRAFT)
    first = operator_client.post(f"{BIDS}/{bid.pk}/withdraw")
    second = operator_client.post(f"{BIDS}/{bid.pk}/withdraw")
    assert (first.status_code, first.json()["status"]) == (200, "withdrawn")
    assert second.status_code == 409


def test_a_writer_cannot_approve_or_withdraw(writer, domains):
    bid = BidFactory()
    assert writer.post(f"{BIDS}/{bid.pk}/approve").status_code == 403
    assert writer.post(f"{BIDS}/{bid.pk}/withdraw").status_code == 403
    assert Bid.objects.get(pk=bid.pk).status == Bid.Status.DRAFT
