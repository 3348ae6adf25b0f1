import pytest
from django.core.management import CommandError, call_command

from bids.models import Bid, Marketplace, Posting
from bids.services.postings import marketplace_scan, marketplaces_scan
from tests.bids.factories import MarketplaceFactory

pytestmark = pytest.mark.django_db
DEMO_BIDS = 19  # demo postings the rules bid on (test_evaluation.py)


def test_two_scans_of_one_feed_keep_one_row_per_posting(domains):
    marketplace = MarketplaceFactory()
    first = marketplace_scan(marketplace=marketplace)
    rows = {p.external_id: (p.pk, p.first_seen_at, p.last_seen_at) for p in Posting.objects.all()}
    second = marketplace_scan(marketplace=marketplace)
    again = {p.external_id: (p.pk, p.first_seen_at, p.last_seen_at) for p in Posting.objects.all()}
    assert (first.found, first.new, second.found, second.new) == (36, 36, 36, 0)
    assert again.keys() == rows.keys()
    for external_id, (pk, first_seen, last_seen) in rows.items():
        assert again[external_id][:2] == (pk, first_seen)
        assert again[external_id][2] > last_seen
    marketplace.refresh_from_db()
    assert marketplace.postings_seen == 36


def test_the_same_external_id_on_two_marketplaces_is_two_postings(domains):
    marketplace_scan(marketplace=MarketplaceFactory())
    marketplace_scan(marketplace=MarketplaceFactory())
    assert Posting.objects.filter(external_id="demo-0001").count() == 2


def test_a_second_scan_evaluates_and_bids_nothing_again(domains):
    marketplace = MarketplaceFactory(training_mode=True)
    first = marketplace_scan(marketplace=marketplace)
    second = marketplace_scan(marketplace=marketplace)
    assert (first.evaluated, first.bids, second.evaluated, second.bids) == (36, DEMO_BIDS, 0, 0)
    assert Bid.objects.count() == DEMO_BIDS


def test_training_mode_records_bids_as_simulated(domains, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        marketplace_scan(marketplace=MarketplaceFactory(training_mode=True))
    assert set(Bid.objects.values_list("status", flat=True)) == {Bid.Status.SIMULATED}
    bid = Bid.objects.select_related("posting").first()
    assert bid.posting.decision == Posting.Decision.BID
    assert bid.amount_cents == bid.posting.proposed_cents
    assert [e.kind for e in bid.events.all()] == ["created", "simulated"]


def test_a_marketplace_without_a_bid_api_gets_drafts_for_an_operator(domains):
    marketplace_scan(marketplace=MarketplaceFactory(training_mode=False))
    assert Bid.objects.count() == DEMO_BIDS
    assert set(Bid.objects.values_list("status", flat=True)) == {Bid.Status.DRAFT}


def test_the_cycle_step_scans_only_marketplaces_that_are_due(domains):
    due, resting = MarketplaceFactory(slug="due"), MarketplaceFactory(slug="resting", scan_interval_seconds=3600)
    marketplace_scan(marketplace=resting)
    summary = marketplaces_scan()
    assert (summary["scanned"], summary["new"]) == (1, 36)
    assert marketplaces_scan()["scanned"] == 0  # both scanned within their interval
    due.refresh_from_db()
    assert due.last_scan_at is not None


def test_an_inactive_marketplace_is_not_scanned(domains):
    MarketplaceFactory(active=False)
    assert marketplaces_scan(force=True)["scanned"] == 0
    assert not Posting.objects.exists()


def test_one_failing_marketplace_does_not_stop_the_others(domains):
    MarketplaceFactory(slug="broken", base_url="bids/samples/missing.json")
    MarketplaceFactory(slug="fine")
    summary = marketplaces_scan(force=True)
    assert summary["scanned"] == 1
    assert summary["failed"][0].startswith("broken: Cannot read the feed file")


def test_the_command_scans_named_marketplaces_and_reports(domains, capsys):
    MarketplaceFactory(slug="demo", training_mode=True)
    call_command("scan_marketplaces", "demo")
    out = capsys.readouterr().out
    assert f"Scanned 1 marketplace(s): 36 new posting(s), 36 evaluated, {DEMO_BIDS} bid(s) made." in out
    call_command("scan_marketplaces", "demo")
    assert "0 new posting(s)" in capsys.readouterr().out
    assert Posting.objects.count() == 36


def test_the_command_refuses_an_unknown_marketplace(domains):
    with pytest.raises(CommandError, match="No marketplace named nope"):
        call_command("scan_marketplaces", "nope")


def test_the_command_fails_when_no_marketplace_could_be_scanned(domains):
    MarketplaceFactory(slug="broken", base_url="bids/samples/missing.json")
    with pytest.raises(CommandError, match="No marketplace could be scanned"):
        call_command("scan_marketplaces", "--all")


def test_a_marketplace_credential_must_be_a_marketplace_variable():
    from django.core.exceptions import ValidationError

    marketplace = MarketplaceFactory.build(credential_env="DATABASE_URL")
    with pytest.raises(ValidationError, match="MARKETPLACE_"):
        marketplace.full_clean()
    MarketplaceFactory.build(
        credential_env="MARKETPLACE_FREELANCER_TOKEN", kind=Marketplace.Kind.FREELANCER
    ).full_clean()


def test_a_stored_posting_keeps_what_the_marketplace_said(domains):
    from datetime import UTC, datetime

    from bids.marketplaces.base import FoundPosting
    from bids.services.postings import posting_upsert_many

    found = FoundPosting(
        "x-1", "Tidy a ledger", "Two hundred lines.", "https://jobs.example/x-1", 4000, 9000, "EUR",
        ("bookkeeping",), datetime(2026, 11, 30, 8, 0, tzinfo=UTC), {"id": "x-1", "extra": [1, 2]},
    )  # fmt: skip
    assert posting_upsert_many(marketplace=MarketplaceFactory(), found=[found, found]) == 1  # listed twice
    stored = Posting.objects.get()
    assert (stored.title, stored.description, stored.url, stored.currency) == (
        "Tidy a ledger", "Two hundred lines.", "https://jobs.example/x-1", "EUR"
    )  # fmt: skip
    assert (stored.budget_min_cents, stored.budget_max_cents, stored.skills) == (4000, 9000, ["bookkeeping"])
    assert (stored.posted_at, stored.raw, stored.decision) == (
        found.posted_at,
        {"id": "x-1", "extra": [1, 2]},
        "pending",
    )


def test_only_this_scans_own_new_rows_are_counted(domains):
    from django.utils import timezone

    from bids.marketplaces import adapter_for
    from bids.services.postings import posting_upsert_many

    here, there = MarketplaceFactory(), MarketplaceFactory()
    found, now = adapter_for(here).search(), timezone.now()
    assert posting_upsert_many(marketplace=there, found=found, now=now) == 36
    assert posting_upsert_many(marketplace=here, found=found, now=now) == 36  # not 72: the other's are not ours
    assert posting_upsert_many(marketplace=here, found=found) == 0  # seen again, even unevaluated
    marketplace_scan(marketplace=here)
    assert posting_upsert_many(marketplace=here, found=found, now=now) == 0  # evaluated rows are not new


def test_a_scan_stores_each_evaluation_and_bids_as_scan(domains):
    marketplace_scan(marketplace=MarketplaceFactory())
    posting = Posting.objects.get(external_id="demo-0002")
    assert (posting.domain.slug, posting.proposed_cents, posting.expected_cost_cents) == ("data_analysis", 15000, 0)
    assert (posting.expected_profit_cents, str(posting.confidence)) == (13500, "1.00")
    assert posting.evaluated_at is not None
    bid = Bid.objects.get(posting=posting)
    assert bid.events.get().actor == "scan"
    assert "Our fixed price is 150.00 USD" in bid.proposal  # the template: no model writes proposals here


def test_a_posting_another_scan_evaluated_meanwhile_is_left_to_it(domains):
    from bids.services.postings import posting_upsert_many, postings_evaluate

    marketplace = MarketplaceFactory()
    from bids.marketplaces import adapter_for

    posting_upsert_many(marketplace=marketplace, found=adapter_for(marketplace).search())
    first = Posting.objects.order_by("pk").first()
    seen = []

    def another_scan_takes_the_first(posting):
        seen.append(posting.pk)
        if posting.pk == first.pk:
            Posting.objects.filter(pk=first.pk).update(decision=Posting.Decision.REVIEW, reasons=["by hand"])

    evaluated, bids = postings_evaluate(marketplace=marketplace, actor="scan", on_posting=another_scan_takes_the_first)
    assert (evaluated, bids, len(seen)) == (35, DEMO_BIDS - 1, 36)  # demo-0001, the first, is a bid
    first.refresh_from_db()
    assert (first.decision, first.reasons) == (Posting.Decision.REVIEW, ["by hand"])
    assert not Bid.objects.filter(posting=first).exists()


def test_a_posting_with_a_live_bid_already_gets_no_second(domains):
    from bids.marketplaces import adapter_for
    from bids.services.postings import posting_upsert_many, postings_evaluate
    from tests.bids.factories import BidFactory

    marketplace = MarketplaceFactory()
    posting_upsert_many(marketplace=marketplace, found=adapter_for(marketplace).search())
    taken = Posting.objects.get(external_id="demo-0002")
    BidFactory(posting=taken, status=Bid.Status.DRAFT)  # an operator's, made before the evaluation
    assert postings_evaluate(marketplace=marketplace, actor="scan") == (36, DEMO_BIDS - 1)
    assert Bid.objects.filter(posting=taken).count() == 1


def test_each_marketplace_evaluates_only_its_own_postings(domains):
    from bids.marketplaces import adapter_for
    from bids.services.postings import posting_upsert_many, postings_evaluate

    here, there = MarketplaceFactory(), MarketplaceFactory()
    posting_upsert_many(marketplace=there, found=adapter_for(there).search())
    assert postings_evaluate(marketplace=here, actor="scan") == (0, 0)
    assert postings_evaluate(marketplace=there, actor="scan", limit=5)[0] == 5


def test_a_marketplace_is_due_once_its_interval_has_passed(domains):
    from datetime import timedelta

    from django.utils import timezone

    from bids.services.postings import marketplace_scan_claim, marketplaces_due

    now = timezone.now()
    marketplace = MarketplaceFactory(scan_interval_seconds=600, last_scan_at=now - timedelta(seconds=600))
    assert marketplaces_due(now=now) == [marketplace]
    assert marketplaces_due(now=now - timedelta(seconds=1)) == []
    stale = Marketplace.objects.get(pk=marketplace.pk)
    assert marketplace_scan_claim(marketplace=marketplace, now=now)
    assert not marketplace_scan_claim(marketplace=stale, now=now)  # another took this round
    marketplace.refresh_from_db()
    assert marketplace.last_scan_at == now


def test_all_scans_every_active_marketplace_even_if_not_due(domains):
    MarketplaceFactory(scan_interval_seconds=3600)
    assert marketplaces_scan()["scanned"] == 1
    assert marketplaces_scan()["scanned"] == 0
    assert marketplaces_scan(force=True)["scanned"] == 1


def test_progress_is_reported_per_posting(domains):
    seen = []
    marketplace_scan(marketplace=MarketplaceFactory(), on_posting=seen.append)
    assert len(seen) == 36 and all(isinstance(posting, Posting) for posting in seen)


def test_the_cycle_step_reports_progress_too(domains):
    MarketplaceFactory()
    seen = []
    assert marketplaces_scan(on_posting=seen.append)["evaluated"] == len(seen) == 36


@pytest.mark.postgres
def test_the_postgresql_upsert_is_one_traced_statement_storing_empty_reasons(domains, recorded_spans):
    from bids.marketplaces import adapter_for
    from bids.services.postings import posting_upsert_many

    marketplace = MarketplaceFactory()
    posting_upsert_many(marketplace=marketplace, found=adapter_for(marketplace).search())
    (span,) = [s for s in recorded_spans.get_finished_spans() if s.name == "INSERT bids_posting"]
    assert (span.attributes["db.system"], span.attributes["agency.rows"]) == ("postgresql", 36)
    assert set(Posting.objects.values_list("decision", flat=True)) == {"pending"}
    assert all(reasons == [] for reasons in Posting.objects.values_list("reasons", flat=True))
