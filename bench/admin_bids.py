"""Admin changelists with many bids (docs/bids.md): query count and render time, 100 vs 100 000 rows.

Fills a PostgreSQL database of its own with N postings and N bids (bulk inserts, spread over 4
marketplaces and every status), logs in a superuser with Django's test client, and renders the bid
and posting changelists (first page, and filtered by status / decision) at 100 rows and again at
100 000 rows (filtered pages against 1 000 rows, where they are as full). Prints, per page, the
queries and the median render time at each size and the ratio (target: the same queries, time
≤ 1.5x).

    .venv/bin/python bench/admin_bids.py [--small 100] [--large 100000] [--rounds 7]

Needs PostgreSQL on 127.0.0.1:5432.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.fresh_postgres import django_on_fresh_postgres  # noqa: E402

DATABASE = "agency_bench_admin"
PLAIN = ["/admin/bids/bid/", "/admin/bids/posting/"]
# A filter keeps a tenth of the bids and a quarter of the postings: measured against 1 000 rows, the
# smallest table where the filtered page is as full (100 rows) as at 100 000.
FILTERED = ["/admin/bids/bid/?status__exact=submitted", "/admin/bids/posting/?decision__exact=bid"]


def setup() -> None:
    django_on_fresh_postgres(
        DATABASE, DJANGO_DEBUG="false", DJANGO_SECRET_KEY="bench-only-not-a-secret-" + "x" * 40,
        DJANGO_ALLOWED_HOSTS="testserver",
    )  # fmt: skip


def fill(total: int) -> None:
    """Postings and bids up to `total` each (added to what is there)."""
    from django.utils import timezone

    from agency.models import Domain
    from bids.models import ENDED, Bid, Marketplace, Posting

    markets = [
        Marketplace.objects.get_or_create(slug=f"m{i}", defaults={"name": f"M{i}", "kind": "feed", "base_url": "x"})[0]
        for i in range(4)
    ]
    domain, now = Domain.objects.get(slug="data_analysis"), timezone.now()
    have = Posting.objects.count()
    decisions, statuses = list(Posting.Decision.values), list(Bid.Status.values)
    for start in range(have, total, 5000):
        batch = range(start, min(start + 5000, total))
        postings = Posting.objects.bulk_create(
            Posting(marketplace=markets[i % 4], external_id=f"p-{i}", title=f"Sales totals per region {i}",
                    budget_max_cents=20000, first_seen_at=now, last_seen_at=now, decision=decisions[i % 4],
                    domain=domain, proposed_cents=15000)
            for i in batch
        )  # fmt: skip
        Bid.objects.bulk_create(
            Bid(marketplace_id=p.marketplace_id, posting=p, amount_cents=15000, proposal="We will do it.",
                status=statuses[i % len(statuses)], live_key=None if statuses[i % len(statuses)] in ENDED else "live")
            for i, p in zip(batch, postings, strict=True)
        )  # fmt: skip
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def measure(client, rounds: int, pages: list[str]) -> dict[str, tuple[int, float]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    found = {}
    for page in pages:
        times = []
        for _ in range(rounds):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(page, secure=True)  # production settings redirect plain HTTP
                times.append(time.perf_counter() - started)
            assert response.status_code == 200, (page, response.status_code)
        found[page] = (len(queries), statistics.median(times))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_superuser("bench", password="bench-password")  # noqa: S106
    client = Client()
    client.force_login(user)
    fill(args.small)
    small = measure(client, args.rounds, PLAIN)
    fill(10 * args.small)
    small |= measure(client, args.rounds, FILTERED)
    fill(args.large)
    large = measure(client, args.rounds, PLAIN + FILTERED)
    print(f"Admin changelists at {args.large} bids and postings against {args.small} (plain pages) and "
          f"{10 * args.small} (filtered pages, as full), median of {args.rounds}")  # fmt: skip
    worst = 0.0
    for page in PLAIN + FILTERED:
        (q_small, t_small), (q_large, t_large) = small[page], large[page]
        ratio = t_large / t_small
        worst = max(worst, ratio)
        same = "same queries" if q_small == q_large else "QUERIES DIFFER"
        print(f"  {page:45} {q_small:3}/{q_large:3} queries ({same})  {t_small * 1000:7.1f} → {t_large * 1000:7.1f} ms"
              f"  {ratio:.2f}x")  # fmt: skip
    print(f"  worst ratio {worst:.2f}x (target ≤ 1.5x)")


if __name__ == "__main__":
    main()
