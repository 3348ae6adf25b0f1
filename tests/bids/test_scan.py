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
