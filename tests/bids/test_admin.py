"""Marketplaces, postings and bids in the operator back office."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bids.models import Bid, Posting
from tests.agency.factories import TaskFactory
from tests.bids.factories import BidFactory, MarketplaceFactory, PostingFactory

pytestmark = pytest.mark.django_db


def action(admin_client, model: str, name: str, *pks):
    return admin_client.post(
        f"/admin/bids/{model}/", {"action": name, "_selected_action": [str(pk) for pk in pks]}, follow=True
    )


def test_an_operator_scans_a_marketplace_from_its_list(admin_client, domains):
    marketplace = MarketplaceFactory(training_mode=True)
    page = action(admin_client, "marketplace", "scan_now", marketplace.pk).content.decode()
    assert "Scanned 1: 36 new posting(s), 19 bid(s) made." in page
    marketplace.refresh_from_db()
    assert (marketplace.postings_seen, Posting.objects.count()) == (36, 36)


def test_an_operator_drafts_bids_on_postings_and_sees_refusals(admin_client, domains):
    fresh, taken = PostingFactory(), PostingFactory()
    BidFactory(posting=taken)
    page = action(admin_client, "posting", "draft_bid", fresh.pk, taken.pk).content.decode()
    assert "1 draft bid(s) made." in page
    assert f"#{taken.pk}: Posting {taken.pk} already has a live bid." in page
    assert Bid.objects.get(posting=fresh).status == Bid.Status.DRAFT


def test_actions_move_each_bid_through_the_services(admin_client, domains, django_capture_on_commit_callbacks):
    draft, sent = BidFactory(status="draft"), BidFactory(status="submitted")
    page = action(admin_client, "bid", "reject", draft.pk, sent.pk).content.decode()
    assert "1 bid(s) rejected." in page and "A submitted bid cannot become rejected" in page
    page = action(admin_client, "bid", "mark_won", sent.pk).content.decode()
    assert "1 bid(s) marked won." in page
    sent.refresh_from_db()
    assert (sent.status, sent.task.status, sent.task.source) == ("won", "paid", "marketplace")
    assert sent.events.get(kind="won").actor.startswith("admin:user:")


def test_a_bid_sent_by_hand_is_approved_then_marked_submitted(admin_client, domains):
    bid = BidFactory(status="draft")
    action(admin_client, "bid", "approve", bid.pk)
    action(admin_client, "bid", "mark_submitted", bid.pk)
    bid.refresh_from_db()
    assert bid.status == Bid.Status.SUBMITTED
    assert [e.kind for e in bid.events.all()] == ["approved", "submitted"]


def test_the_change_page_edits_only_a_drafts_amount_and_proposal(admin_client, domains):
    draft, sent = BidFactory(status="draft"), BidFactory(status="submitted", amount_cents=15000)
    form = {"amount_cents": "$160.00", "proposal": "Better words.", "events-TOTAL_FORMS": 0, "events-INITIAL_FORMS": 0}
    assert admin_client.post(f"/admin/bids/bid/{draft.pk}/change/", form).status_code == 302
    draft.refresh_from_db()
    assert (draft.amount_cents, draft.proposal, draft.status) == (16000, "Better words.", "draft")
    admin_client.post(f"/admin/bids/bid/{sent.pk}/change/", form)
    sent.refresh_from_db()
    assert (sent.amount_cents, sent.proposal) == (15000, "We will do it.")


def _bids(n: int, domains: dict) -> None:
    """Bids in every status, each on a posting of a marketplace of its own, the postings spread over the
    domains (and none, before evaluation); a won bid has its task."""
    statuses, decisions, slugs = list(Bid.Status.values), list(Posting.Decision.values), [None, *domains]
    start = Bid.objects.count()
    for i in range(start, start + n):
        posting = PostingFactory(marketplace=MarketplaceFactory(), decision=decisions[i % 4],
                                 domain=domains.get(slugs[i % 4]))  # fmt: skip
        status = statuses[i % len(statuses)]
        BidFactory(posting=posting, status=status, task=TaskFactory(status="paid") if status == "won" else None)


@pytest.mark.parametrize("url", ["/admin/bids/bid/", "/admin/bids/posting/", "/admin/bids/marketplace/"])
def test_the_lists_render_in_a_constant_number_of_queries(admin_client, domains, url):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url).status_code == 200
        return len(captured)

    _bids(3, domains)
    few = queries()
    _bids(40, domains)
    assert Bid.objects.exclude(task=None).count() == 4 and Posting.objects.exclude(domain=None).count() > 30
    assert queries() == few
