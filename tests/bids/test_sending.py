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
    if retracted:
        assert bid.events.get().detail == "Retracted at the marketplace."
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


# --- What the timeline and the row say, with two bids in flight ------------------------------------


def events_of(bid) -> list[tuple]:
    return [(e.kind, e.from_status, e.to_status, e.actor, e.detail) for e in bid.events.all()]


@pytest.fixture
def two_approved(freelancer, freelancer_server):
    bids = []
    for title in ("Sales by region", "Expenses by month"):
        project = freelancer_server.project_add(title, jobs=("Excel",))
        posting = PostingFactory(marketplace=freelancer, external_id=str(project["id"]))
        bids.append(BidFactory(posting=posting, status=Bid.Status.APPROVED, amount_cents=15000))
    return bids


def test_a_sent_bid_records_its_claim_and_its_remote_id(approved, freelancer_server):
    before = Bid.objects.get(pk=approved.pk).updated_at
    sent = bid_send(bid_id=approved.pk, actor="worker")
    remote_id = sent.remote_id
    assert events_of(sent) == [
        ("claimed", "approved", "submitting", "worker", ""),
        ("submitted", "submitting", "submitted", "worker", f"Sent. Remote id {remote_id}."),
    ]
    assert sent.submitted_at is not None and sent.claimed_at is not None
    assert sent.updated_at > before


def test_a_refusal_is_recorded_on_its_own_bid_only(two_approved, freelancer_server):
    refused, other = two_approved
    del freelancer_server.projects[int(refused.posting.external_id)]
    Bid.objects.filter(pk=other.pk).update(status=Bid.Status.SUBMITTING)  # another sender's, in flight
    failed = bid_send(bid_id=refused.pk, actor="worker")
    (event,) = [e for e in events_of(failed) if e[0] == "refused"]
    assert event[1:4] == ("submitting", "failed", "worker")
    assert "Project not found" in event[4] and event[4] == failed.last_error
    assert Bid.objects.get(pk=other.pk).status == Bid.Status.SUBMITTING
    assert Bid.objects.get(pk=other.pk).last_error == ""


def test_a_server_error_is_noted_on_its_own_bid_only(two_approved, freelancer_server):
    first, other = two_approved
    Bid.objects.filter(pk=other.pk).update(status=Bid.Status.SUBMITTING)
    freelancer_server.fail_next(1, status=502, path=BIDS)
    bid_send(bid_id=first.pk, actor="worker")
    assert "502" in Bid.objects.get(pk=first.pk).last_error
    assert Bid.objects.get(pk=other.pk).last_error == ""


def test_reconciliation_settles_each_bid_with_its_own_remote_id(two_approved, freelancer, freelancer_server):
    freelancer_server.drop_after_record = True
    for bid in two_approved:
        bid_send(bid_id=bid.pk, actor="worker")
    freelancer_server.drop_after_record = False
    assert all(bid.last_error for bid in Bid.objects.all())
    counts = bids_reconcile(marketplace=freelancer)
    assert counts == {"settled": 2, "resent": 0, "won": 0, "lost": 0, "withdrawn": 0}
    remote_by_project = {str(b["project_id"]): str(b["id"]) for b in freelancer_server.bids.values()}
    for bid in Bid.objects.select_related("posting"):
        assert bid.remote_id == remote_by_project[bid.posting.external_id]
        (event,) = [e for e in events_of(bid) if e[0] == "submitted"]
        assert event == ("submitted", "submitting", "submitted", "reconcile",
                         f"Found at the marketplace. Remote id {bid.remote_id}.")  # fmt: skip
        assert bid.last_error == ""  # the lost answer's error is cleared once settled


def test_the_grace_period_ends_exactly_at_its_length(approved, freelancer, freelancer_server, settings):
    freelancer_server.fail_next(1, status=502, path=BIDS)
    bid_send(bid_id=approved.pk, actor="worker")
    claimed_at = Bid.objects.get(pk=approved.pk).claimed_at
    grace = timedelta(seconds=settings.BID_RESUBMIT_GRACE_SECONDS)
    assert bids_reconcile(marketplace=freelancer, now=claimed_at + grace - timedelta(microseconds=1))["resent"] == 0
    assert bids_reconcile(marketplace=freelancer, now=claimed_at + grace)["resent"] == 1
    bid = Bid.objects.get(pk=approved.pk)
    assert bid.claimed_at > claimed_at  # the new claim's time: the next grace period counts from it
    resent = [e for e in events_of(bid) if e[0] == "resent"]
    assert resent == [("resent", "submitting", "submitting", "reconcile",
                       "Not listed by the marketplace after the grace period: sent again.")]  # fmt: skip


def test_two_bids_resent_in_one_round_are_both_counted(two_approved, freelancer, freelancer_server, settings):
    freelancer_server.fail_next(2, status=502, path=BIDS)
    for bid in two_approved:
        bid_send(bid_id=bid.pk, actor="worker")
    counts = bids_reconcile(marketplace=freelancer, now=later(settings.BID_RESUBMIT_GRACE_SECONDS + 1))
    assert (counts["resent"], len(freelancer_server.bids)) == (2, 2)


def test_reconciliation_counts_two_wins_and_two_losses(freelancer, freelancer_server):
    for award in ("awarded", "awarded", "rejected", "revoked"):
        project = freelancer_server.project_add()
        remote = freelancer_server.bid_seed(project["id"], 150, award_status=award)
        posting = PostingFactory(marketplace=freelancer, external_id=str(project["id"]))
        BidFactory(posting=posting, status=Bid.Status.SUBMITTED, remote_id=str(remote))
    assert bids_reconcile(marketplace=freelancer) == {"settled": 0, "resent": 0, "won": 2, "lost": 2, "withdrawn": 0}
    lost = Bid.objects.filter(status=Bid.Status.LOST).first()
    assert lost.decided_at is not None


def test_a_sender_whose_claim_was_taken_over_records_nothing(approved, freelancer_server):
    import uuid

    from bids.marketplaces.base import MarketplaceError
    from bids.services.bids import _place_failed, _settle_submitted

    Bid.objects.filter(pk=approved.pk).update(status=Bid.Status.SUBMITTING, claim_token=uuid.uuid4())
    stale = uuid.uuid4()
    _place_failed(approved, stale, MarketplaceError("Refused."), actor="late")
    _place_failed(approved, stale, MarketplaceError("Timed out.", transient=True), actor="late")
    assert not _settle_submitted(approved, remote_id="1", actor="late", token=stale, detail="Sent.")
    bid = Bid.objects.get(pk=approved.pk)
    assert (bid.status, bid.last_error, bid.remote_id) == (Bid.Status.SUBMITTING, "", None)
    assert not bid.events.exists()


def test_a_bid_without_a_token_fails_and_frees_its_posting(approved, monkeypatch):
    from tests.bids.conftest import FREELANCER_TOKEN_ENV

    monkeypatch.delenv(FREELANCER_TOKEN_ENV)
    failed = bid_send(bid_id=approved.pk, actor="worker")
    assert (failed.status, failed.live_key) == (Bid.Status.FAILED, None)
    assert FREELANCER_TOKEN_ENV in failed.last_error


def test_training_mode_says_so_on_the_timeline(freelancer):
    Marketplace.objects.filter(pk=freelancer.pk).update(training_mode=True)
    bid = BidFactory(posting=PostingFactory(marketplace=freelancer), status=Bid.Status.APPROVED)
    simulated = bid_send(bid_id=bid.pk, actor="worker")
    assert events_of(simulated) == [
        ("simulated", "approved", "simulated", "worker", "Training mode: nothing was sent.")
    ]


def test_an_error_text_is_kept_to_its_maximum():
    from bids.marketplaces.base import ERROR_TEXT_MAX, MarketplaceError, error_text

    assert error_text(MarketplaceError("x" * (ERROR_TEXT_MAX + 5))) == "x" * ERROR_TEXT_MAX
    assert error_text(MarketplaceError("short")) == "short"


@pytest.mark.django_db
def test_sending_inside_a_transaction_is_refused_before_any_request(approved, freelancer_server):
    from django.db import transaction

    refused = pytest.raises(RuntimeError, match=r"^bid_send calls the marketplace: call it outside any transaction.$")
    with refused, transaction.atomic():
        bid_send(bid_id=approved.pk, actor="worker")
    assert freelancer_server.requests == []
    assert Bid.objects.get(pk=approved.pk).status == Bid.Status.APPROVED


def test_a_settled_bid_is_not_changed_by_a_late_answer_of_its_own_claim(approved, freelancer_server):
    from bids.marketplaces.base import MarketplaceError
    from bids.services.bids import _place_failed, _settle_submitted

    sent = bid_send(bid_id=approved.pk, actor="worker")
    token = Bid.objects.get(pk=sent.pk).claim_token
    _place_failed(sent, token, MarketplaceError("Refused late."), actor="late")
    _place_failed(sent, token, MarketplaceError("Timed out late.", transient=True), actor="late")
    assert not _settle_submitted(sent, remote_id="999", actor="late", token=None, detail="Found.")
    bid = Bid.objects.get(pk=sent.pk)
    assert (bid.status, bid.remote_id, bid.last_error) == (Bid.Status.SUBMITTED, sent.remote_id, "")
    assert [e[0] for e in events_of(bid)] == ["claimed", "submitted"]


def test_failing_and_settling_move_the_rows_update_time(approved, two_approved, freelancer_server):
    first, second = two_approved
    before = {bid.pk: Bid.objects.get(pk=bid.pk).updated_at for bid in (first, second)}
    freelancer_server.projects.pop(int(first.posting.external_id))
    bid_send(bid_id=first.pk, actor="worker")
    bid_send(bid_id=second.pk, actor="worker")
    for bid in (first, second):
        assert Bid.objects.get(pk=bid.pk).updated_at > before[bid.pk]


def test_withdrawing_a_draft_calls_nothing(freelancer, freelancer_server):
    draft = BidFactory(posting=PostingFactory(marketplace=freelancer), status=Bid.Status.DRAFT)
    bid_withdraw(bid=Bid.objects.select_related("marketplace").get(pk=draft.pk), actor="operator")
    assert [r for r in freelancer_server.requests if r.method == "PUT"] == []
    assert Bid.objects.get(pk=draft.pk).last_error == ""


def test_the_retraction_is_on_the_timeline(approved, freelancer_server):
    sent = bid_send(bid_id=approved.pk, actor="worker")
    bid_withdraw(bid=sent, actor="operator")
    assert events_of(sent)[-1] == ("retracted", "", "", "operator", "Retracted at the marketplace.")


def test_the_reconcile_step_adds_up_every_marketplace_and_goes_past_a_broken_one(freelancer, freelancer_server):
    from bids.services.bids import bids_reconcile_all
    from tests.bids.conftest import FREELANCER_TOKEN_ENV

    Marketplace.objects.create(
        slug="a-broken", name="Broken", kind=Marketplace.Kind.FREELANCER, base_url="http://127.0.0.1:9",
        credential_env=FREELANCER_TOKEN_ENV, training_mode=False,
    )  # fmt: skip
    twin = Marketplace.objects.create(
        slug="twin", name="Twin", kind=Marketplace.Kind.FREELANCER, base_url=freelancer_server.url,
        credential_env=FREELANCER_TOKEN_ENV, training_mode=False,
    )  # fmt: skip
    freelancer_server.drop_after_record = True
    for marketplace in (freelancer, twin):
        project = freelancer_server.project_add()
        posting = PostingFactory(marketplace=marketplace, external_id=str(project["id"]))
        bid_send(bid_id=BidFactory(posting=posting, status=Bid.Status.APPROVED).pk, actor="worker")
    freelancer_server.drop_after_record = False
    summary = bids_reconcile_all()
    assert summary["settled"] == 2
    assert [failure.split(":")[0] for failure in summary["failed"]] == ["a-broken"]
