import pytest
from django.db import IntegrityError, transaction

from agency.models import Task
from bids.models import Bid, BidEvent, Marketplace
from bids.services.bids import (
    BidExists,
    BidRefused,
    InvalidBidTransition,
    bid_approve,
    bid_create,
    bid_reject,
    bid_transition,
    bid_win,
    bid_withdraw,
)
from tests.bids.factories import BidFactory, MarketplaceFactory, PostingFactory

pytestmark = pytest.mark.django_db


def test_a_bid_starts_as_a_draft_with_the_evaluated_amount_and_a_template_proposal(domains):
    posting = PostingFactory(title="Tidy the March sales sheet", proposed_cents=12345)
    bid = bid_create(posting=posting, actor="operator")
    assert (bid.status, bid.amount_cents, bid.marketplace_id) == (Bid.Status.DRAFT, 12345, posting.marketplace_id)
    assert '"Tidy the March sales sheet"' in bid.proposal
    assert "123.45 USD" in bid.proposal
    assert [(e.kind, e.to_status, e.actor) for e in bid.events.all()] == [("created", "draft", "operator")]


def test_a_second_live_bid_on_a_posting_is_refused_with_the_first_ones_id(domains):
    posting = PostingFactory()
    first = bid_create(posting=posting, actor="a")
    with pytest.raises(BidExists) as refused:
        bid_create(posting=posting, actor="b", amount_cents=9000, proposal="Mine")
    assert refused.value.existing_id == first.pk
    assert Bid.objects.count() == 1


def test_the_database_itself_refuses_a_second_live_bid(domains):
    posting = PostingFactory()
    BidFactory(posting=posting, status=Bid.Status.SUBMITTED)
    with pytest.raises(IntegrityError), transaction.atomic():
        BidFactory(posting=posting, status=Bid.Status.DRAFT)


@pytest.mark.parametrize("ending", ["withdraw", "reject"])
def test_an_ended_bid_makes_room_for_a_new_one(domains, ending):
    posting = PostingFactory()
    first = bid_create(posting=posting, actor="a")
    (bid_withdraw if ending == "withdraw" else bid_reject)(bid=first, actor="operator")
    first.refresh_from_db()
    assert first.live_key is None
    second = bid_create(posting=posting, actor="a", amount_cents=8000)
    assert second.pk != first.pk
    assert Bid.objects.filter(posting=posting, live_key="live").get() == second


@pytest.mark.parametrize("amount", [2999, 50001])
def test_it_refuses_an_amount_outside_the_bounds(domains, amount):
    with pytest.raises(BidRefused, match="between 3000 and 50000"):
        bid_create(posting=PostingFactory(budget_max_cents=None), actor="a", amount_cents=amount)
    assert not Bid.objects.exists()


def test_it_refuses_an_amount_above_the_budget(domains):
    with pytest.raises(BidRefused, match="above the posting's budget"):
        bid_create(posting=PostingFactory(budget_max_cents=20000), actor="a", amount_cents=20001)
    assert bid_create(posting=PostingFactory(budget_max_cents=20000), actor="a", amount_cents=20000)


def test_approving_on_a_training_marketplace_simulates_the_bid(domains, django_capture_on_commit_callbacks):
    bid = BidFactory(posting=PostingFactory(marketplace=MarketplaceFactory(training_mode=True)))
    with django_capture_on_commit_callbacks(execute=True):
        bid_approve(bid=bid, actor="operator")
    bid.refresh_from_db()
    assert bid.status == Bid.Status.SIMULATED
    assert [e.kind for e in bid.events.all()] == ["approved", "simulated"]


def test_approving_where_bids_are_sent_by_hand_leaves_it_approved(domains, django_capture_on_commit_callbacks):
    bid = BidFactory()  # a feed: no bid API
    with django_capture_on_commit_callbacks(execute=True):
        bid_approve(bid=bid, actor="operator")
    bid.refresh_from_db()
    assert (bid.status, bid.sends) == (Bid.Status.APPROVED, 0)
    bid_transition(bid=bid, to=Bid.Status.SUBMITTED, actor="operator", detail="Sent on the website.")
    assert Bid.objects.get(pk=bid.pk).status == Bid.Status.SUBMITTED


@pytest.mark.parametrize(
    ("status", "to"),
    [
        ("draft", "submitted"),
        ("draft", "won"),
        ("simulated", "submitted"),
        ("submitted", "approved"),
        ("won", "withdrawn"),
        ("withdrawn", "approved"),
        ("rejected", "approved"),
        ("submitting", "withdrawn"),
        ("failed", "submitting"),
    ],
)
def test_it_refuses_moves_outside_the_bid_lifecycle(domains, status, to):
    bid = BidFactory(status=status)
    with pytest.raises(InvalidBidTransition, match=f"A {status} bid cannot become {to}"):
        bid_transition(bid=bid, to=to, actor="x")
    assert Bid.objects.get(pk=bid.pk).status == status
    assert not BidEvent.objects.exists()


def test_a_transition_from_a_status_the_bid_no_longer_has_changes_nothing(domains):
    bid = BidFactory(status=Bid.Status.DRAFT)
    stale = Bid.objects.get(pk=bid.pk)
    bid_reject(bid=bid, actor="first")
    with pytest.raises(InvalidBidTransition, match="The bid is rejected now, not draft"):
        bid_approve(bid=stale, actor="second")
    assert list(BidEvent.objects.values_list("actor", flat=True)) == ["first"]


@pytest.mark.parametrize("status", ["simulated", "submitting", "won", "lost", "failed"])
def test_only_draft_approved_and_submitted_bids_can_be_withdrawn(domains, status):
    bid = BidFactory(status=status)
    with pytest.raises(InvalidBidTransition, match=f"A {status} bid cannot be withdrawn"):
        bid_withdraw(bid=bid, actor="operator")


def test_a_second_withdrawal_of_the_same_bid_fails(domains):
    bid = BidFactory(status=Bid.Status.DRAFT)
    stale = Bid.objects.get(pk=bid.pk)
    bid_withdraw(bid=bid, actor="one")
    with pytest.raises(InvalidBidTransition):
        bid_withdraw(bid=stale, actor="two")
    assert BidEvent.objects.filter(kind="withdrawn").count() == 1


def test_a_won_bid_becomes_a_paid_marketplace_task(domains, settings):
    settings.HIGH_VALUE_THRESHOLD_CENTS = 20000
    marketplace = MarketplaceFactory(fee_percent=20)
    bid = BidFactory(
        posting=PostingFactory(marketplace=marketplace, title="Sales by region", description="Orders CSV."),
        status=Bid.Status.SUBMITTED,
        amount_cents=25000,
    )
    bid_win(bid=bid, actor="operator")
    task = Task.objects.get()
    assert (task.source, task.payment, task.status) == ("marketplace", "marketplace", "paid")
    assert (task.title, task.description, task.domain, task.client) == (
        "Sales by region", "Orders CSV.", domains["data_analysis"], None
    )  # fmt: skip
    assert (task.price_cents, task.is_high_value, task.checkout_key) == (25000, True, bid.idempotency_key)
    bid.refresh_from_db()
    assert (bid.status, bid.task) == (Bid.Status.WON, task)
    marketplace.refresh_from_db()
    assert (marketplace.bids_won, marketplace.revenue_cents) == (1, 20000)


def test_a_win_reported_twice_makes_one_task(domains):
    bid = BidFactory(status=Bid.Status.SUBMITTED)
    stale = Bid.objects.get(pk=bid.pk)
    bid_win(bid=bid, actor="reconcile")
    with pytest.raises(InvalidBidTransition):
        bid_win(bid=stale, actor="operator")
    assert Task.objects.count() == 1
    assert Marketplace.objects.get().bids_won == 1


def test_a_win_needs_the_postings_domain(domains):
    bid = BidFactory(status=Bid.Status.SUBMITTED, posting=PostingFactory(domain=None))
    with pytest.raises(BidRefused, match=r"^The posting has no domain; set one before marking the bid won.$"):
        bid_win(bid=bid, actor="operator")
    assert not Task.objects.exists()


def test_every_change_writes_who_did_what_and_why(domains):
    bid = BidFactory(status=Bid.Status.DRAFT)
    bid_reject(bid=bid, actor="operator", reason="Too vague a brief.")
    plain = bid_reject(bid=BidFactory(status=Bid.Status.DRAFT), actor="operator")
    assert plain.events.get().detail == ""
    other = BidFactory(status=Bid.Status.DRAFT)
    bid_transition(bid=other, to=Bid.Status.APPROVED, actor="api:key:1")
    assert [(e.kind, e.from_status, e.to_status, e.actor, e.detail) for e in bid.events.all()] == [
        ("rejected", "draft", "rejected", "operator", "Too vague a brief.")
    ]
    assert [(e.kind, e.from_status, e.to_status, e.detail) for e in other.events.all()] == [
        ("approved", "draft", "approved", "")
    ]


def test_a_stale_transition_names_the_bid(domains):
    bid = BidFactory(status=Bid.Status.DRAFT)
    stale = Bid.objects.get(pk=bid.pk)
    bid_reject(bid=bid, actor="first")
    with pytest.raises(InvalidBidTransition) as refused:
        bid_approve(bid=stale, actor="second")
    assert refused.value.existing_id == bid.pk
    with pytest.raises(InvalidBidTransition) as not_withdrawable:
        bid_withdraw(bid=Bid.objects.get(pk=bid.pk), actor="third")
    assert not_withdrawable.value.existing_id == bid.pk


def test_a_bid_starts_only_as_a_draft_or_approved(domains):
    with pytest.raises(ValueError, match=r"^A bid starts as draft or approved, not submitted."):
        bid_create(posting=PostingFactory(), actor="a", status=Bid.Status.SUBMITTED)


def test_the_live_bid_named_is_the_postings_own(domains):
    first, second = PostingFactory(), PostingFactory()
    ended = bid_create(posting=second, actor="a")
    bid_withdraw(bid=ended, actor="a")
    live = bid_create(posting=second, actor="a", amount_cents=9000)
    bid_create(posting=first, actor="a")  # newer, on another posting
    with pytest.raises(BidExists) as refused:
        bid_create(posting=second, actor="b")
    assert refused.value.existing_id == live.pk


def test_a_bid_takes_the_postings_currency(domains):
    bid = bid_create(posting=PostingFactory(currency="EUR"), actor="a")
    assert bid.currency == "EUR"
    assert "150.00 EUR" in bid.proposal


@pytest.mark.parametrize("amount", [3000, 50000])
def test_the_bounds_themselves_are_allowed(domains, amount):
    assert (
        bid_create(posting=PostingFactory(budget_max_cents=None), actor="a", amount_cents=amount).amount_cents == amount
    )


def test_a_posting_never_evaluated_needs_an_amount(domains):
    with pytest.raises(BidRefused, match=r"^No amount: give one, or evaluate the posting first.$"):
        bid_create(posting=PostingFactory(proposed_cents=None), actor="a")


def test_the_template_names_the_domain_and_the_skills(domains):
    with_domain = bid_create(posting=PostingFactory(skills=["csv", "excel"]), actor="a")
    assert "small data analysis team (csv, excel)" in with_domain.proposal
    without = bid_create(posting=PostingFactory(domain=None, skills=[]), actor="a")
    assert "small freelance team (freelance)" in without.proposal


def test_a_win_records_its_task_and_when(domains):
    bid = BidFactory(status=Bid.Status.SUBMITTED)
    bid_win(bid=bid, actor="operator")
    bid.refresh_from_db()
    assert bid.decided_at is not None
    assert bid.events.get(kind="won").detail == f"Task #{bid.task_id}."


def test_a_won_task_is_medium_priced_in_the_bids_currency_with_its_history(domains, settings):
    settings.HIGH_VALUE_THRESHOLD_CENTS = 25000
    bid = BidFactory(status=Bid.Status.SUBMITTED, amount_cents=25000, currency="EUR")
    bid_win(bid=bid, actor="reconcile")
    task = Task.objects.get()
    assert (task.complexity, task.currency, task.is_high_value) == ("medium", "EUR", True)  # at the threshold
    assert [(e.from_status, e.to_status, e.actor, e.reason) for e in task.events.order_by("pk")] == [
        ("", "pending", "reconcile", "bid won"),
        ("pending", "paid", "reconcile", "escrowed by the marketplace"),
    ]


def test_a_win_made_twice_by_key_finds_the_first_task(domains):
    from agency.services.tasks import task_create_marketplace

    bid = BidFactory(status=Bid.Status.SUBMITTED)
    fields = {"domain": domains["legal"], "title": "T" * 250, "description": "", "price_cents": 9000,
              "currency": "USD", "actor": "a", "work_key": bid.idempotency_key}  # fmt: skip
    first = task_create_marketplace(**fields)
    again = task_create_marketplace(**fields)
    assert again == first and Task.objects.count() == 1
    assert len(first.title) == 200
