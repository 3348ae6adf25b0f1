"""A bid's life: made, approved, sent exactly once, settled, won or withdrawn (docs/bids.md).

Sending follows the outbox's shape. `bid_send` claims the row (`approved` → `submitting` with a
fresh claim token) and commits before any request leaves; the marketplace is called outside any
transaction, with the bid's idempotency key; the answer is recorded by compare-and-set on that
token, so a sender whose claim was taken over records nothing. A crash or a timeout leaves the row
`submitting`, and `bids_reconcile` settles it from the marketplace's own list of our bids: found
there → `submitted`; not found after BID_RESUBMIT_GRACE_SECONDS → claimed again and sent again
with the same key. Every status change is one compare-and-set plus one `BidEvent`, in one
transaction (`bid_transition`).
"""

import uuid
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from agency.agents.baseline import proposal_from_template
from agency.errors import DomainError
from agency.services.tasks import task_create_marketplace
from bids.marketplaces import adapter_for
from bids.marketplaces.base import MarketplaceError, RemoteBid, call_guarded, error_text
from bids.models import ENDED, LIVE_KEY, Bid, BidEvent, Marketplace, Posting

logger = structlog.get_logger(__name__)
S = Bid.Status

TRANSITIONS: dict[str, frozenset[str]] = {
    S.DRAFT: frozenset({S.APPROVED, S.REJECTED, S.WITHDRAWN}),
    # approved → submitted: sent by hand by an operator (marketplaces without a bid API)
    S.APPROVED: frozenset({S.SUBMITTING, S.SUBMITTED, S.SIMULATED, S.WITHDRAWN}),
    S.SUBMITTING: frozenset({S.SUBMITTED, S.FAILED}),
    S.SUBMITTED: frozenset({S.WON, S.LOST, S.WITHDRAWN}),
}
WITHDRAWABLE = (S.DRAFT, S.APPROVED, S.SUBMITTED)


class BidExists(DomainError):
    """The posting already has a live bid (its id is `existing_id`)."""


class InvalidBidTransition(DomainError):
    pass


class BidRefused(DomainError):
    """What was asked of the bid is not allowed (an amount out of bounds, a marketplace without a bid API)."""

    code = "invalid"


def bid_transition(*, bid: Bid, to: str, actor: str, detail: str = "", kind: str = "", **fields) -> Bid:
    """Move `bid` from the status it was loaded with to `to`, or raise `InvalidBidTransition`
    (a compare-and-set, plus its event in the same transaction)."""
    current = bid.status
    if to not in TRANSITIONS.get(current, frozenset()):
        raise InvalidBidTransition(f"A {current} bid cannot become {to}.", existing_id=bid.pk)
    changes = {"status": to, "updated_at": timezone.now(), **fields}
    if to in ENDED:
        changes["live_key"] = None
    with transaction.atomic():
        if not Bid.objects.filter(pk=bid.pk, status=current).update(**changes):
            actual = Bid.objects.filter(pk=bid.pk).values_list("status", flat=True).first()
            raise InvalidBidTransition(f"The bid is {actual} now, not {current}.", existing_id=bid.pk)
        BidEvent.objects.create(
            bid_id=bid.pk, kind=kind or to, from_status=current, to_status=to, actor=actor, detail=detail
        )
    for name, value in changes.items():
        setattr(bid, name, value)
    logger.info("bid_transition", bid_id=bid.pk, from_status=current, to_status=to, actor=actor)
    return bid


def bid_create(
    *, posting: Posting, actor: str, amount_cents: int | None = None, proposal: str = "", status: str = S.DRAFT
) -> Bid:
    """The posting's bid, `draft` or `approved`; `BidExists` when it already has a live one (the
    database's unique live key decides between concurrent callers)."""
    if status not in (S.DRAFT, S.APPROVED):
        raise ValueError(f"A bid starts as draft or approved, not {status}.")
    amount = amount_cents if amount_cents is not None else posting.proposed_cents
    _check_amount(posting, amount)
    proposal = proposal.strip() or _proposal_default(posting, amount)
    try:
        with transaction.atomic():
            bid = Bid.objects.create(
                marketplace_id=posting.marketplace_id,
                posting=posting,
                amount_cents=amount,
                currency=posting.currency,
                proposal=proposal,
                status=status,
            )
            BidEvent.objects.create(bid=bid, kind="created", to_status=status, actor=actor)
    except IntegrityError:
        live = Bid.objects.filter(posting=posting, live_key=LIVE_KEY).values_list("pk", flat=True).first()
        if live is None:
            raise
        raise BidExists(f"Posting {posting.pk} already has a live bid.", existing_id=live) from None
    return bid


def _check_amount(posting: Posting, amount: int | None) -> None:
    if amount is None:
        raise BidRefused("No amount: give one, or evaluate the posting first.")
    low, high = settings.BID_MIN_CENTS, settings.BID_MAX_CENTS
    if not low <= amount <= high:
        raise BidRefused(f"The amount must be between {low} and {high} cents.")
    if posting.budget_max_cents is not None and amount > posting.budget_max_cents:
        raise BidRefused(f"The amount is above the posting's budget ({posting.budget_max_cents} cents).")


def _proposal_default(posting: Posting, amount: int) -> str:
    domain_name = posting.domain.name if posting.domain_id else "freelance"
    return proposal_from_template(
        title=posting.title,
        domain_name=domain_name,
        skills=list(posting.skills or []),
        amount_cents=amount,
        currency=posting.currency,
    )


def bid_approve(*, bid: Bid, actor: str) -> Bid:
    bid_transition(bid=bid, to=S.APPROVED, actor=actor)
    transaction.on_commit(lambda: bid_send_enqueue(bid.pk))
    return bid


def bid_reject(*, bid: Bid, actor: str, reason: str = "") -> Bid:
    return bid_transition(bid=bid, to=S.REJECTED, actor=actor, detail=reason)


def bid_send_enqueue(bid_id: int) -> None:
    """Ask a worker to send the bid (eager without a broker)."""
    from bids.tasks import bid_send_task  # it imports this module

    bid_send_task.delay(bid_id)


# --- Sending, exactly once ---------------------------------------------------------------------


def bid_send(*, bid_id: int, actor: str) -> Bid:
    """Send an approved bid: `simulated` in training mode, left `approved` for an operator where the
    marketplace takes no API bids, else claimed and sent (see the module's docstring)."""
    bid = Bid.objects.select_related("marketplace", "posting").get(pk=bid_id)
    if bid.status != S.APPROVED:
        return bid  # sent, settled or withdrawn meanwhile
    marketplace = bid.marketplace
    if marketplace.training_mode:
        return bid_transition(bid=bid, to=S.SIMULATED, actor=actor, detail="Training mode: nothing was sent.")
    if not marketplace.takes_api_bids:
        return bid  # an operator submits it by hand and marks it submitted
    if connection.in_atomic_block:  # the claim must be committed before the request leaves
        raise RuntimeError("bid_send calls the marketplace: call it outside any transaction.")
    token = uuid.uuid4()
    try:
        bid_transition(
            bid=bid, to=S.SUBMITTING, actor=actor, kind="claimed",
            claim_token=token, claimed_at=timezone.now(), sends=F("sends") + 1,
        )  # fmt: skip
    except InvalidBidTransition:
        return Bid.objects.get(pk=bid_id)  # another sender claimed it first
    return _place(bid, token, actor=actor)


def _place(bid: Bid, token: uuid.UUID, *, actor: str) -> Bid:
    """The remote call, outside any transaction, then the answer recorded if the claim is still ours."""
    marketplace = bid.marketplace
    try:
        remote_id = call_guarded(
            marketplace,
            adapter_for(marketplace).bid_place,
            posting_external_id=bid.posting.external_id,
            amount_cents=bid.amount_cents,
            proposal=bid.proposal,
            idempotency_key=str(bid.idempotency_key),
        )
    except MarketplaceError as exc:
        return _place_failed(bid, token, exc, actor=actor)
    _settle_submitted(bid, remote_id=remote_id, actor=actor, token=token, detail="Sent.")
    return Bid.objects.get(pk=bid.pk)


def _place_failed(bid: Bid, token: uuid.UUID, exc: MarketplaceError, *, actor: str) -> Bid:
    """A refusal ends the bid (a new one may be made); anything else waits for reconciliation, since
    the request may have arrived."""
    refused = not exc.transient and not getattr(exc, "duplicate_bid", False)  # a duplicate: it did arrive
    if refused:
        with transaction.atomic():
            ended = Bid.objects.filter(pk=bid.pk, status=S.SUBMITTING, claim_token=token)
            if ended.update(status=S.FAILED, live_key=None, last_error=error_text(exc), updated_at=timezone.now()):
                BidEvent.objects.create(
                    bid_id=bid.pk, kind="refused", from_status=S.SUBMITTING, to_status=S.FAILED,
                    actor=actor, detail=error_text(exc),
                )  # fmt: skip
    else:
        Bid.objects.filter(pk=bid.pk, status=S.SUBMITTING, claim_token=token).update(last_error=error_text(exc))
    logger.warning("bid_send_failed", bid_id=bid.pk, error=str(exc)[:300], refused=refused)
    return Bid.objects.get(pk=bid.pk)


def _settle_submitted(bid: Bid, *, remote_id: str, actor: str, token: uuid.UUID | None, detail: str) -> bool:
    """`submitting` → `submitted` with the remote id; with `token`, only while that claim holds."""
    now = timezone.now()
    with transaction.atomic():
        rows = Bid.objects.filter(pk=bid.pk, status=S.SUBMITTING)
        if token is not None:
            rows = rows.filter(claim_token=token)
        if not rows.update(status=S.SUBMITTED, remote_id=remote_id, submitted_at=now, last_error="", updated_at=now):
            return False
        BidEvent.objects.create(
            bid_id=bid.pk, kind="submitted", from_status=S.SUBMITTING, to_status=S.SUBMITTED,
            actor=actor, detail=f"{detail} Remote id {remote_id}.",
        )  # fmt: skip
        Marketplace.objects.filter(pk=bid.marketplace_id).update(bids_placed=F("bids_placed") + 1)
    return True


# --- Reconciliation ------------------------------------------------------------------------------


def bids_reconcile(
    *, marketplace: Marketplace, now: datetime | None = None, actor: str = "reconcile"
) -> dict[str, int]:
    """Settle the marketplace's `submitting` bids and bring `submitted` ones up to date from the
    marketplace's list of our bids. Safe to run in several processes at once: every change is a
    compare-and-set."""
    counts = {"settled": 0, "resent": 0, "won": 0, "lost": 0, "withdrawn": 0}
    if marketplace.training_mode or not marketplace.takes_api_bids:
        return counts
    listed = call_guarded(marketplace, adapter_for(marketplace).bids_mine)
    remote = {item.posting_external_id: item for item in listed}
    now = now or timezone.now()
    ours = Bid.objects.filter(marketplace=marketplace).select_related("posting", "marketplace")
    for bid in ours.filter(status=S.SUBMITTING):
        found = remote.get(bid.posting.external_id)
        if found is not None:
            counts["settled"] += _settle_submitted(
                bid, remote_id=found.remote_id, actor=actor, token=None, detail="Found at the marketplace."
            )
        elif bid.claimed_at and bid.claimed_at <= now - timedelta(seconds=settings.BID_RESUBMIT_GRACE_SECONDS):
            counts["resent"] += _resend(bid, actor=actor)
    for bid in ours.filter(status__in=[S.SUBMITTED, S.WITHDRAWN]):
        found = remote.get(bid.posting.external_id)
        if found is not None and found.remote_id == bid.remote_id:
            outcome = _follow(bid, found, actor=actor)
            if outcome:
                counts[outcome] += 1
    return counts


def bids_reconcile_all() -> dict:
    """The cycle's reconciliation step, over every active marketplace that takes API bids."""
    summary: dict = {"settled": 0, "resent": 0, "won": 0, "lost": 0, "withdrawn": 0, "failed": []}
    for marketplace in Marketplace.objects.filter(active=True, training_mode=False).order_by("slug"):
        if not marketplace.takes_api_bids:
            continue
        try:
            counts = bids_reconcile(marketplace=marketplace)
        except MarketplaceError as exc:
            summary["failed"].append(f"{marketplace.slug}: {exc}")
            continue
        for key, value in counts.items():
            summary[key] += value
    return summary


def _resend(bid: Bid, *, actor: str) -> int:
    """Claim a stale `submitting` bid again (compare-and-set on the old claim) and send it again."""
    token = uuid.uuid4()
    with transaction.atomic():
        claimed = Bid.objects.filter(pk=bid.pk, status=S.SUBMITTING, claim_token=bid.claim_token).update(
            claim_token=token, claimed_at=timezone.now(), sends=F("sends") + 1
        )
        if not claimed:
            return 0
        BidEvent.objects.create(
            bid_id=bid.pk, kind="resent", from_status=S.SUBMITTING, to_status=S.SUBMITTING, actor=actor,
            detail="Not listed by the marketplace after the grace period: sent again.",
        )  # fmt: skip
    _place(bid, token, actor=actor)
    return 1


def _follow(bid: Bid, remote: RemoteBid, *, actor: str) -> str:
    """What the marketplace says became of a sent bid: won, lost, or (for a bid we withdrew whose
    retraction did not reach it) retracted again."""
    if bid.status == S.WITHDRAWN:
        if remote.status == "active":
            _retract(bid, actor=actor)
            return "withdrawn"
        return ""
    try:
        if remote.status == "awarded":
            bid_win(bid=bid, actor=actor)
            return "won"
        if remote.status == "lost":
            bid_transition(bid=bid, to=S.LOST, actor=actor, decided_at=timezone.now())
            return "lost"
        if remote.status == "retracted":
            bid_transition(bid=bid, to=S.WITHDRAWN, actor=actor, detail="Retracted at the marketplace.")
            return "withdrawn"
    except InvalidBidTransition:
        pass  # another reconciler got there first
    return ""


# --- Winning and withdrawing ----------------------------------------------------------------------


def bid_win(*, bid: Bid, actor: str) -> Bid:
    """A won bid becomes a paid `marketplace` task for the work pipeline, in the same transaction."""
    posting = bid.posting
    if posting.domain_id is None:
        raise BidRefused("The posting has no domain; set one before marking the bid won.")
    with transaction.atomic():
        task = task_create_marketplace(
            domain=posting.domain,
            title=posting.title,
            description=posting.description,
            price_cents=bid.amount_cents,
            currency=bid.currency,
            actor=actor,
            work_key=bid.idempotency_key,
        )
        bid_transition(bid=bid, to=S.WON, actor=actor, detail=f"Task #{task.pk}.", task=task, decided_at=timezone.now())
        fee = bid.amount_cents * bid.marketplace.fee_percent / 100
        Marketplace.objects.filter(pk=bid.marketplace_id).update(
            bids_won=F("bids_won") + 1, revenue_cents=F("revenue_cents") + int(bid.amount_cents - fee)
        )
    return bid


def bid_withdraw(*, bid: Bid, actor: str) -> Bid:
    """Withdraw a draft, approved or submitted bid (of two concurrent withdrawals one succeeds, the
    other gets `InvalidBidTransition`). A sent bid is retracted at the marketplace after commit; if
    that fails, reconciliation retracts it later."""
    if bid.status not in WITHDRAWABLE:
        raise InvalidBidTransition(f"A {bid.status} bid cannot be withdrawn.", existing_id=bid.pk)
    was_sent = bid.status == S.SUBMITTED
    bid_transition(bid=bid, to=S.WITHDRAWN, actor=actor)
    if was_sent and bid.remote_id and not bid.marketplace.training_mode:
        transaction.on_commit(lambda: _retract(bid, actor=actor))
    return bid


def _retract(bid: Bid, *, actor: str) -> None:
    try:
        call_guarded(bid.marketplace, adapter_for(bid.marketplace).bid_retract, remote_id=bid.remote_id)
    except MarketplaceError as exc:
        Bid.objects.filter(pk=bid.pk).update(last_error=error_text(f"Retraction: {exc}"))
        logger.warning("bid_retract_failed", bid_id=bid.pk, error=str(exc)[:300])
        return
    BidEvent.objects.create(bid_id=bid.pk, kind="retracted", actor=actor, detail="Retracted at the marketplace.")
