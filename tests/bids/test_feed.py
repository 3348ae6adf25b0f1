import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from bids.marketplaces import adapter_for
from bids.marketplaces.base import MarketplaceError, call_guarded, canonical_url, external_id_for
from tests.bids.factories import MarketplaceFactory
from tests.tracing.http_server import RecordingServer

pytestmark = pytest.mark.django_db

JSON_FEED = {
    "items": [
        {
            "id": "j-1",
            "title": "Sales totals per region",
            "description": "A 2 MB CSV of orders.",
            "url": "https://jobs.example/j-1",
            "budget": {"min": 40, "max": "120.50", "currency": "usd"},
            "skills": ["CSV", " Excel ", "csv"],
            "posted_at": "2026-11-28T09:15:00Z",
        },
        {"title": "No id, a URL only", "url": "https://Jobs.Example:443/j-2?utm_source=x&b=2&a=1#top"},
    ]
}

RSS_FEED = b"""<?xml version="1.0"?>
<rss version="2.0" xmlns:job="https://jobs.example/ns">
 <channel><title>Jobs</title>
  <item>
   <guid>rss-7</guid><title>Bookkeeping for March</title>
   <description>Reconcile 200 bank lines.</description>
   <link>https://jobs.example/rss-7</link>
   <pubDate>Sat, 28 Nov 2026 10:00:00 GMT</pubDate>
   <category>Bookkeeping</category><category>QuickBooks</category>
   <job:budget>90</job:budget>
  </item>
 </channel>
</rss>"""

ATOM_FEED = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
 <title>Jobs</title><id>urn:jobs</id><updated>2026-11-29T08:00:00Z</updated>
 <entry>
  <id>urn:job:atom-3</id><title>Draft an NDA</title>
  <link href="https://jobs.example/atom-3"/>
  <summary>A one-way NDA, two pages.</summary>
  <published>2026-11-29T08:00:00Z</published><updated>2026-11-29T08:00:00Z</updated>
  <category term="Contract Drafting"/>
 </entry>
</feed>"""


def serving(body: bytes, content_type: str = "application/json") -> RecordingServer:
    return RecordingServer(respond=lambda request: (200, {"Content-Type": content_type}, body))


def test_it_maps_a_json_feed_item_to_a_posting():
    with serving(json.dumps(JSON_FEED).encode()) as server:
        found = adapter_for(MarketplaceFactory(base_url=server.url + "/feed.json")).search()
    first = found[0]
    assert (first.external_id, first.title, first.description) == (
        "j-1",
        "Sales totals per region",
        "A 2 MB CSV of orders.",
    )
    assert (first.budget_min_cents, first.budget_max_cents, first.currency) == (4000, 12050, "USD")
    assert first.skills == ("csv", "excel")
    assert first.posted_at == datetime(2026, 11, 28, 9, 15, tzinfo=UTC)
    assert first.url == "https://jobs.example/j-1"


def test_it_follows_a_field_mapping_to_another_feed_shape():
    document = {"data": {"jobs": [{"job_id": 991, "name": "Pivot table", "pay": 75, "tags": "excel,pivot tables"}]}}
    marketplace = MarketplaceFactory(
        search={
            "items": "data.jobs",
            "fields": {"id": "job_id", "title": "name", "budget_max": "pay", "skills": "tags"},
        }
    )
    with serving(json.dumps(document).encode()) as server:
        marketplace.base_url = server.url
        (posting,) = adapter_for(marketplace).search()
    assert (posting.external_id, posting.title, posting.skills) == ("991", "Pivot table", ("excel", "pivot tables"))
    assert (posting.budget_min_cents, posting.budget_max_cents) == (7500, 7500)  # a single amount is both ends


def test_it_reads_an_rss_feed_with_a_namespaced_budget():
    marketplace = MarketplaceFactory(search={"fields": {"budget_max": "job_budget"}})
    with serving(RSS_FEED, "application/rss+xml") as server:
        marketplace.base_url = server.url
        (posting,) = adapter_for(marketplace).search()
    assert (posting.external_id, posting.title, posting.url) == (
        "rss-7",
        "Bookkeeping for March",
        "https://jobs.example/rss-7",
    )
    assert posting.description == "Reconcile 200 bank lines."
    assert posting.skills == ("bookkeeping", "quickbooks")
    assert posting.budget_max_cents == 9000
    assert posting.posted_at == datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def test_it_reads_an_atom_feed():
    with serving(ATOM_FEED, "application/atom+xml") as server:
        (posting,) = adapter_for(MarketplaceFactory(base_url=server.url)).search()
    assert (posting.external_id, posting.title, posting.url) == (
        "urn:job:atom-3",
        "Draft an NDA",
        "https://jobs.example/atom-3",
    )
    assert posting.skills == ("contract drafting",)
    assert posting.posted_at == datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    assert posting.budget_max_cents is None


def test_it_names_a_posting_without_an_id_by_the_sha256_of_its_canonical_url():
    with serving(json.dumps(JSON_FEED).encode()) as server:
        second = adapter_for(MarketplaceFactory(base_url=server.url)).search()[1]
    canonical = "https://jobs.example/j-2?a=1&b=2"
    assert canonical_url(JSON_FEED["items"][1]["url"]) == canonical
    assert second.external_id == hashlib.sha256(canonical.encode()).hexdigest()


def test_it_computes_the_same_id_in_another_process():
    url = "HTTPS://jobs.example/x/?ref=mail&q=sales#section"
    script = (
        "import sys; sys.path.insert(0, '.'); from bids.marketplaces.base import external_id_for; "
        f"print(external_id_for(source_id=None, url={url!r}))"
    )
    env = {"DJANGO_SETTINGS_MODULE": "agency.settings", "AGENCY_DOTENV": "false", "PYTHONHASHSEED": "123"}
    code = "import django; django.setup(); " + script
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert other.stdout.strip() == external_id_for(source_id=None, url=url)
    assert external_id_for(source_id=None, url="https://jobs.example/x/?q=sales") == other.stdout.strip()
    assert external_id_for(source_id=None, url="https://jobs.example/y/?q=sales") != other.stdout.strip()


def test_it_reads_the_bundled_demo_feed_from_the_repository():
    found = adapter_for(MarketplaceFactory(base_url="bids/samples/demo_feed.json")).search()
    assert len(found) == 36
    assert len({posting.external_id for posting in found}) == 36


def test_it_refuses_a_feed_file_outside_the_project():
    with pytest.raises(MarketplaceError, match="inside the project"):
        adapter_for(MarketplaceFactory(base_url="../../etc/passwd")).search()


def test_it_says_what_is_wrong_with_a_feed_that_is_not_one():
    html = serving(b"<html><body>Sign in</body></html>", "text/html")
    with html as server, pytest.raises(MarketplaceError, match="not a JSON, RSS or Atom feed"):
        adapter_for(MarketplaceFactory(base_url=server.url)).search()
    with serving(b'{"items": [') as server, pytest.raises(MarketplaceError, match="not valid JSON"):
        adapter_for(MarketplaceFactory(base_url=server.url)).search()


def test_it_reads_again_after_a_server_error():
    answers = iter([(503, {}, b"busy"), (200, {"Content-Type": "application/json"}, json.dumps(JSON_FEED).encode())])
    with RecordingServer(respond=lambda request: next(answers)) as server:
        found = adapter_for(MarketplaceFactory(base_url=server.url)).search()
    assert len(found) == 2
    assert len(server.requests) == 2


def test_it_stops_calling_a_marketplace_after_failures_in_a_row(fast_marketplaces):
    with RecordingServer(status=500) as server:
        marketplace = MarketplaceFactory(base_url=server.url)
        for _ in range(3):  # MARKETPLACE_BREAKER_FAILURES, each read tried 3 times
            with pytest.raises(MarketplaceError):
                call_guarded(marketplace, adapter_for(marketplace).search)
        asked = len(server.requests)
        with pytest.raises(MarketplaceError, match="Paused until"):
            call_guarded(marketplace, adapter_for(marketplace).search)
    assert asked == 9
    assert len(server.requests) == asked  # the open breaker sent nothing
    marketplace.refresh_from_db()
    assert marketplace.open_until is not None


def test_a_success_closes_the_breaker_count(fast_marketplaces):
    answers = iter([(500, {}, b"")] * 3 + [(200, {"Content-Type": "application/json"}, b"[]")])
    with RecordingServer(respond=lambda request: next(answers)) as server:
        marketplace = MarketplaceFactory(base_url=server.url)
        with pytest.raises(MarketplaceError):
            call_guarded(marketplace, adapter_for(marketplace).search)
        marketplace.refresh_from_db()
        assert marketplace.failures == 1
        assert call_guarded(marketplace, adapter_for(marketplace).search) == []
    marketplace.refresh_from_db()
    assert (marketplace.failures, marketplace.open_until) == (0, None)
