"""Scanning a marketplace: postings stored once, new ones evaluated, bids made by the approval policy.

`posting_upsert_many` is one `INSERT … ON CONFLICT (marketplace, external_id) DO UPDATE SET
last_seen_at` per batch (MariaDB: `ON DUPLICATE KEY UPDATE`): a posting seen again is touched, never
duplicated, whichever scanner sees it first. Evaluation claims each pending posting by
compare-and-set on its decision, so concurrent scans evaluate a posting once.
"""

from dataclasses import dataclass
from datetime import datetime

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from agency.models import Domain
from bids.marketplaces import adapter_for
from bids.marketplaces.base import FoundPosting, MarketplaceError, call_guarded
from bids.models import Bid, Marketplace, Posting
from bids.services.bids import BidExists, bid_create, bid_send_enqueue
from bids.services.evaluation import (
    Evaluation,
    auto_submit_allowed,
    model_opinion,
    posting_evaluation,
    proposal_by_model,
)
from tracing.otel import tracer

logger = structlog.get_logger(__name__)
_tracer = tracer()
BATCH = 1000


@dataclass
class ScanResult:
    found: int = 0
    new: int = 0
    evaluated: int = 0
    bids: int = 0


def posting_upsert_many(*, marketplace: Marketplace, found: list[FoundPosting], now: datetime | None = None) -> int:
    """Store what a scan found; returns how many postings were new."""
    now = now or timezone.now()
    unique = list({posting.external_id: posting for posting in found}.values())  # a feed may list one job twice
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _upsert_postgresql(marketplace, unique, now)
        else:
            _upsert_portable(marketplace, unique, now)
    # The rows this scan inserted carry its own timestamp (a concurrent scan's differs).
    new = Posting.objects.filter(marketplace=marketplace, decision=Posting.Decision.PENDING, first_seen_at=now).count()
    Marketplace.objects.filter(pk=marketplace.pk).update(postings_seen=F("postings_seen") + new, last_scan_at=now)
    return new


UPSERT_FIELDS = (
    "marketplace", "external_id", "title", "description", "url", "budget_min_cents", "budget_max_cents", "currency",
    "skills", "posted_at", "first_seen_at", "last_seen_at", "raw", "decision", "reasons",
)  # fmt: skip


def _upsert_postgresql(marketplace: Marketplace, postings: list[FoundPosting], now: datetime) -> None:
    """One INSERT … ON CONFLICT per row, all sent in psycopg's pipeline (`executemany`) with the values
    bound by the server, in the caller's transaction. Django's `bulk_create` runs the same upsert
    through UNNEST arrays that psycopg quotes in Python, at about a third of the rate (bench/ingest.py)."""
    import psycopg
    from psycopg.types.json import Jsonb

    quote, meta = connection.ops.quote_name, Posting._meta
    columns = ", ".join(quote(meta.get_field(name).column) for name in UPSERT_FIELDS)
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(UPSERT_FIELDS))}) "  # noqa: S608 (our own names)
        f"ON CONFLICT ({quote('marketplace_id')}, {quote('external_id')}) "
        f"DO UPDATE SET {quote('last_seen_at')} = EXCLUDED.{quote('last_seen_at')}"
    )
    pending, no_reasons = Posting.Decision.PENDING.value, Jsonb([])
    rows = [
        (marketplace.pk, p.external_id, p.title, p.description, p.url, p.budget_min_cents, p.budget_max_cents,
         p.currency, Jsonb(list(p.skills)), p.posted_at, now, now, Jsonb(p.raw), pending, no_reasons)
        for p in postings
    ]  # fmt: skip
    connection.ensure_connection()
    with (
        _tracer.start_as_current_span(f"INSERT {meta.db_table}") as span,
        psycopg.Cursor(connection.connection) as cursor,
    ):
        span.set_attribute("db.system", "postgresql")
        span.set_attribute("agency.rows", len(rows))
        cursor.executemany(sql, rows)


def _upsert_portable(marketplace: Marketplace, postings: list[FoundPosting], now: datetime) -> None:
    """SQLite and MariaDB: Django's bulk upsert, a thousand rows per statement."""
    rows = [
        Posting(
            marketplace=marketplace,
            external_id=posting.external_id,
            title=posting.title,
            description=posting.description,
            url=posting.url,
            budget_min_cents=posting.budget_min_cents,
            budget_max_cents=posting.budget_max_cents,
            currency=posting.currency,
            skills=list(posting.skills),
            posted_at=posting.posted_at,
            first_seen_at=now,
            last_seen_at=now,
            raw=posting.raw,
        )
        for posting in postings
    ]
    # MariaDB's ON DUPLICATE KEY takes no target: any unique key (here only this one) decides.
    target = ["marketplace", "external_id"] if connection.features.supports_update_conflicts_with_target else None
    Posting.objects.bulk_create(
        rows, batch_size=BATCH, update_conflicts=True, unique_fields=target, update_fields=["last_seen_at"]
    )


def postings_evaluate(*, marketplace: Marketplace, actor: str, limit: int = 5000, on_posting=None) -> tuple[int, int]:
    """Evaluate the marketplace's pending postings and make the bids the policy allows.
    Returns (evaluated, bids made).

    Model calls (BID_MODEL_EVALUATION, BID_MODEL_PROPOSALS) happen before the posting is claimed,
    outside any transaction; a scan that loses the claim to another has paid for a call in vain,
    which is cheaper than holding a transaction open across a model call."""
    domains = list(Domain.objects.filter(active=True))
    pending = Posting.objects.filter(marketplace=marketplace, decision=Posting.Decision.PENDING).order_by("pk")
    evaluated = bids = 0
    for posting in pending.select_related("marketplace")[:limit]:
        if on_posting is not None:
            on_posting(posting)
        evaluation, calls = posting_evaluation(posting=posting, domains=domains), []
        if settings.BID_MODEL_EVALUATION:
            evaluation, calls = model_opinion(posting=posting, evaluation=evaluation)
        proposal = ""
        if settings.BID_MODEL_PROPOSALS and evaluation.decision == Posting.Decision.BID:
            proposal, more = proposal_by_model(
                posting=posting, domain=evaluation.domain, amount_cents=evaluation.proposed_cents
            )
            calls += more
        with transaction.atomic():
            if not _evaluation_store(posting, evaluation, calls):
                continue  # another scan evaluated it
            evaluated += 1
            if evaluation.decision == Posting.Decision.BID:
                auto = auto_submit_allowed(marketplace=marketplace, evaluation=evaluation)
                bids += _bid_by_policy(posting, auto=auto, proposal=proposal, actor=actor)
    return evaluated, bids


def _evaluation_store(posting: Posting, evaluation: Evaluation, calls: list[int]) -> bool:
    """Write the evaluation if the posting is still pending (compare-and-set), with its ledger rows."""
    claimed = Posting.objects.filter(pk=posting.pk, decision=Posting.Decision.PENDING).update(
        decision=evaluation.decision,
        reasons=evaluation.reasons,
        domain=evaluation.domain,
        proposed_cents=evaluation.proposed_cents,
        expected_cost_cents=evaluation.expected_cost_cents,
        expected_profit_cents=evaluation.expected_profit_cents,
        confidence=evaluation.confidence,
        evaluated_at=timezone.now(),
    )
    if claimed:
        posting.model_calls.add(*calls)
        posting.domain, posting.proposed_cents = evaluation.domain, evaluation.proposed_cents
    return bool(claimed)


def _bid_by_policy(posting: Posting, *, auto: bool, proposal: str, actor: str) -> int:
    """Training mode and auto-submit make an approved bid (sent after commit: simulated or placed);
    otherwise a draft waits for an operator."""
    training = posting.marketplace.training_mode
    status = Bid.Status.APPROVED if (auto or training) else Bid.Status.DRAFT
    try:
        bid = bid_create(posting=posting, actor=actor, status=status, proposal=proposal)
    except BidExists:
        return 0
    if status == Bid.Status.APPROVED:
        transaction.on_commit(lambda: bid_send_enqueue(bid.pk))
    return 1


def marketplace_scan(*, marketplace: Marketplace, actor: str = "scan", on_posting=None) -> ScanResult:
    """Search the marketplace, store what it lists, evaluate the new postings, bid where the policy says."""
    found = call_guarded(marketplace, adapter_for(marketplace).search)
    result = ScanResult(found=len(found))
    result.new = posting_upsert_many(marketplace=marketplace, found=found)
    result.evaluated, result.bids = postings_evaluate(marketplace=marketplace, actor=actor, on_posting=on_posting)
    logger.info("marketplace_scanned", marketplace=marketplace.slug, **result.__dict__)
    return result


def marketplaces_due(*, now: datetime | None = None) -> list[Marketplace]:
    """Active marketplaces whose scan interval has passed since their last scan."""
    now = now or timezone.now()
    due = []
    for marketplace in Marketplace.objects.filter(active=True).order_by("slug"):
        last = marketplace.last_scan_at
        if last is None or (now - last).total_seconds() >= marketplace.scan_interval_seconds:
            due.append(marketplace)
    return due


def marketplace_scan_claim(*, marketplace: Marketplace, now: datetime | None = None) -> bool:
    """Take this round's scan of the marketplace (compare-and-set on its last scan time), so two
    cycles or beat and a command running at once scan it once."""
    now = now or timezone.now()
    seen = Marketplace.objects.filter(pk=marketplace.pk, last_scan_at=marketplace.last_scan_at)
    return bool(seen.update(last_scan_at=now))


def marketplaces_scan(*, slugs: list[str] | None = None, force: bool = False, on_posting=None) -> dict:
    """The cycle's scan step: every due marketplace (every active one with `force`, the named ones with
    `slugs`), each round claimed first. One that fails is reported and the others are still scanned."""
    summary: dict = {"scanned": 0, "new": 0, "evaluated": 0, "bids": 0, "failed": [], "skipped": []}
    if slugs:
        candidates = list(Marketplace.objects.filter(slug__in=slugs).order_by("slug"))
    else:
        candidates = Marketplace.objects.filter(active=True).order_by("slug") if force else marketplaces_due()
    for marketplace in candidates:
        if not marketplace_scan_claim(marketplace=marketplace):
            summary["skipped"].append(marketplace.slug)  # another scan took this round
            continue
        try:
            result = marketplace_scan(marketplace=marketplace, on_posting=on_posting)
        except MarketplaceError as exc:
            summary["failed"].append(f"{marketplace.slug}: {exc}")
            continue
        summary["scanned"] += 1
        for key in ("new", "evaluated", "bids"):
            summary[key] += getattr(result, key)
    return summary
