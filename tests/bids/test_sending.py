"""Sending bids to a marketplace with a bid API, and reconciling them, against a loopback Freelancer."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agency.models import Task
from bids.models import Bid, Marketplace
from bids.services.bids import bid_send, bid_withdraw, bids_reconcile
from bids.services.postings import marketplace_scan
from tests.bids.factories import BidFactory, PostingFactory
from tests.bids.fake_marketplaces import BIDS, SELF

pytestmark = pytest.mark.django_db(transaction=True)  # bid_send commits its claim before calling out


@pytest.fixture
def approved(freelancer, freelancer_server):
    """An approved bid on a project the marketplace lists."""
    project = freelancer_server.project_add("Sales by region", jobs=("Excel", "Data Analysis"))
    posting = PostingFactory(marketplace=freelancer, external_id=str(project["id"]))
    return BidFactory(posting=posting, status=Bid.Status.APPROVED, amount_cents=15050)


def remote_bids(server) -> list[dict]:
    return list(server.bids.values())


def later(seconds: int):
    return timezone.now() + timedelta(seconds=seconds)


def test_it_sends_an_approved_bid_once_with_its_idempotency_key(approved, freelancer_server):
    sent = bid_send(bid_id=approved.pk, actor="worker")
    assert sent.status == Bid.Status.SUBMITTED
    (remote,) = remote_bids(freelancer_server)
    assert (sent.remote_id, sent.sends) == (str(remote["id"]), 1)
    assert (remote["amount"], remote["project_id"]) == (150.5, int(approved.posting.external_id))
    assert remote["idempotency_key"] == str(approved.idempotency_key)
    assert bid_send(bid_id=approved.pk, actor="worker").status == Bid.Status.SUBMITTED  # nothing more sent
    assert len(freelancer_server.placements) == 1
    assert [e.kind for e in sent.events.all()] == ["claimed", "submitted"]
    assert Marketplace.objects.get().bids_placed == 1


def test_a_refusal_ends_the_bid_and_makes_room_for_another(approved, freelancer_server):
    freelancer_server.projects.clear()  # the project is gone: the marketplace answers 404
    failed = bid_send(bid_id=approved.pk, actor="worker")
    assert (failed.status, failed.live_key) == (Bid.Status.FAILED, None)
    assert "Project not found" in failed.last_error
    assert failed.events.last().kind == "refused"


def test_a_server_error_leaves_the_bid_submitting_without_a_retry(approved, freelancer_server):
    freelancer_server.fail_next(1, status=502, path=BIDS)
    left = bid_send(bid_id=approved.pk, actor="worker")
    assert (left.status, left.remote_id) == (Bid.Status.SUBMITTING, None)
    assert "502" in left.last_error
    assert len(freelancer_server.placements) == 1
    assert remote_bids(freelancer_server) == []


def test_reconciliation_sends_again_only_after_the_grace_period(approved, freelancer, freelancer_server, settings):
    freelancer_server.fail_next(1, status=502, path=BIDS)
    bid_send(bid_id=approved.pk, actor="worker")
    assert bids_reconcile(marketplace=freelancer)["resent"] == 0  # it may still arrive
    assert Bid.objects.get(pk=approved.pk).status == Bid.Status.SUBMITTING
    counts = bids_reconcile(marketplace=freelancer, now=later(settings.BID_RESUBMIT_GRACE_SECONDS + 1))
    assert counts["resent"] == 1
    bid = Bid.objects.get(pk=approved.pk)
    assert (bid.status, bid.sends) == (Bid.Status.SUBMITTED, 2)
    (remote,) = remote_bids(freelancer_server)
    assert remote["idempotency_key"] == str(bid.idempotency_key)  # the same key both times
    assert [e.kind for e in bid.events.all()] == ["claimed", "resent", "submitted"]


def test_a_lost_answer_is_settled_from_the_marketplaces_list(approved, freelancer, freelancer_server, settings):
    freelancer_server.drop_after_record = True  # the bid arrives; its answer never comes back
    assert bid_send(bid_id=approved.pk, actor="worker").status == Bid.Status.SUBMITTING
    freelancer_server.drop_after_record = False
    counts = bids_reconcile(marketplace=freelancer, now=later(settings.BID_RESUBMIT_GRACE_SECONDS + 1))
    assert (counts["settled"], counts["resent"]) == (1, 0)
    (remote,) = remote_bids(freelancer_server)
    assert Bid.objects.get(pk=approved.pk).remote_id == str(remote["id"])
    assert len(freelancer_server.placements) == 1


def test_a_duplicate_refusal_means_it_arrived_before(approved, freelancer, freelancer_server):
    earlier = freelancer_server.bid_seed(int(approved.posting.external_id), 150.5)
    assert bid_send(bid_id=approved.pk, actor="worker").status == Bid.Status.SUBMITTING  # not failed
    assert bids_reconcile(marketplace=freelancer)["settled"] == 1
    assert Bid.objects.get(pk=approved.pk).remote_id == str(earlier)


@pytest.mark.parametrize(
    ("award", "retracted", "status"),
    [("awarded", False, "won"), ("rejected", False, "lost"), (None, True, "withdrawn"), (None, False, "submitted")],
)
def test_reconciliation_follows_what_became_of_a_sent_bid(freelancer, freelancer_server, award, retracted, status):
    project = freelancer_server.project_add()
    remote = freelancer_server.bid_seed(project["id"], 150, award_status=award, retracted=retracted)
    posting = PostingFactory(marketplace=freelancer, external_id=str(project["id"]))
    bid = BidFactory(posting=posting, status=Bid.Status.SUBMITTED, remote_id=str(remote))
    bids_reconcile(marketplace=freelancer)
    bid.refresh_from_db()
    assert bid.status == status
    assert Task.objects.filter(source="marketplace").count() == (status == "won")
    bids_reconcile(marketplace=freelancer)  # twice changes nothing more
    assert Task.objects.count() == (status == "won")


def test_withdrawing_a_sent_bid_retracts_it_at_the_marketplace(approved, freelancer_server):
    sent = bid_send(bid_id=approved.pk, actor="worker")
    bid_withdraw(bid=sent, actor="operator")
    (remote,) = remote_bids(freelancer_server)
    assert remote["retracted"] is True
    assert [e.kind for e in sent.events.all()][-2:] == ["withdrawn", "retracted"]


def test_a_retraction_that_failed_is_done_by_reconciliation(approved, freelancer, freelancer_server):
    sent = bid_send(bid_id=approved.pk, actor="worker")
    freelancer_server.fail_next(3, status=503)
    bid_withdraw(bid=sent, actor="operator")
    assert remote_bids(freelancer_server)[0]["retracted"] is False
    assert "Retraction" in Bid.objects.get(pk=sent.pk).last_error
    assert bids_reconcile(marketplace=freelancer)["withdrawn"] == 1
    assert remote_bids(freelancer_server)[0]["retracted"] is True


def test_training_mode_sends_nothing_to_the_marketplace(freelancer, freelancer_server):
    for n in range(3):
        freelancer_server.project_add(f"Excel totals {n}", jobs=("Excel", "Data Analysis"), budget=(100, 200))
    Marketplace.objects.filter(pk=freelancer.pk).update(training_mode=True)
    freelancer.refresh_from_db()
    result = marketplace_scan(marketplace=freelancer)
    assert result.bids == 3
    assert set(Bid.objects.values_list("status", flat=True)) == {Bid.Status.SIMULATED}
    assert bids_reconcile(marketplace=freelancer)["settled"] == 0
    assert {r.method for r in freelancer_server.requests} == {"GET"}  # the search; no bid, list or retraction
    assert all(r.path.startswith("/api/projects/0.1/projects/") for r in freelancer_server.requests)


def test_the_policy_sends_profitable_confident_bids_by_itself(freelancer, freelancer_server, settings):
    settings.BID_AUTO_MIN_PROFIT_CENTS = 5000
    freelancer_server.project_add("Excel totals", jobs=("Excel", "Data Analysis"), budget=(100, 200))
    freelancer_server.project_add("Tiny sheet", jobs=("Excel",), budget=(30, 40))  # 36.00 kept: a draft
    marketplace_scan(marketplace=freelancer)
    assert sorted(Bid.objects.values_list("status", flat=True)) == ["draft", "submitted"]
    assert len(remote_bids(freelancer_server)) == 1


def test_the_reconcile_command_settles_every_live_api_marketplace_and_reports(
    approved, freelancer, freelancer_server, capsys
):
    from django.core.management import call_command

    from tests.bids.factories import MarketplaceFactory

    MarketplaceFactory(slug="feed")  # no bid API: nothing to ask
    MarketplaceFactory(slug="training", kind=Marketplace.Kind.FREELANCER, training_mode=True, base_url="http://x")
    MarketplaceFactory(slug="idle", kind=Marketplace.Kind.FREELANCER, active=False, base_url="http://x")
    freelancer_server.drop_after_record = True
    bid_send(bid_id=approved.pk, actor="worker")
    freelancer_server.drop_after_record = False
    call_command("reconcile_bids")
    out = capsys.readouterr()
    assert "1 settled, 0 resent, 0 won, 0 lost, 0 withdrawn." in out.out
    assert "Failed" not in out.err
    assert Bid.objects.get(pk=approved.pk).status == Bid.Status.SUBMITTED
    assert {r.path for r in freelancer_server.requests if r.method == "GET"} == {SELF, BIDS}


def test_the_reconcile_step_reports_a_marketplace_it_cannot_reach(freelancer, freelancer_server, capsys):
    from django.core.management import call_command

    from bids.services.bids import bids_reconcile_all

    freelancer_server.fail_next(10, status=503)
    summary = bids_reconcile_all()
    assert summary["failed"] and summary["failed"][0].startswith("freelancer: ")
    call_command("reconcile_bids")
    assert "Failed: freelancer: " in capsys.readouterr().err
