"""Posting ingest (docs/bids.md): the scan service's bulk upsert against a raw psycopg upsert.

Stores N postings (half already known, half new) on one marketplace, in a PostgreSQL database of its
own, two ways, alternating round by round so both see the same machine:

- **service**: `posting_upsert_many` (Django's bulk_create with ON CONFLICT DO UPDATE, in batches of
  1 000, then counting the new rows and updating the marketplace's counters);
- **raw**: psycopg `executemany` of `INSERT … ON CONFLICT (marketplace_id, external_id) DO UPDATE SET
  last_seen_at = EXCLUDED.last_seen_at` with the same rows and columns.

Before each round the table is reset to the same N/2 known postings. Prints each way's median rows/s
and the service's share of the raw rate (target ≥ 50 %).

    .venv/bin/python bench/ingest.py [--postings 10000] [--rounds 5]

Needs PostgreSQL on 127.0.0.1:5432.
"""

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.fresh_postgres import django_on_fresh_postgres  # noqa: E402

DATABASE = "agency_bench_ingest"
PG_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
COLUMNS = (
    "marketplace_id, external_id, title, description, url, budget_min_cents, budget_max_cents, currency, skills, "
    "posted_at, first_seen_at, last_seen_at, raw, decision, reasons"
)


def setup() -> None:
    django_on_fresh_postgres(DATABASE)


def found_postings(count: int) -> list:
    from bids.marketplaces.base import FoundPosting

    posted = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    return [
        FoundPosting(
            external_id=f"job-{i}",
            title=f"Sales totals per region, export {i}",
            description="A CSV of orders (about 2 MB) with region, product and amount columns; totals and a chart.",
            url=f"https://jobs.example/job-{i}",
            budget_min_cents=4000,
            budget_max_cents=15000,
            skills=("csv", "excel", "data analysis"),
            posted_at=posted,
            raw={"id": f"job-{i}", "title": f"Sales totals per region, export {i}", "budget": {"min": 40, "max": 150}},
        )
        for i in range(count)
    ]


def reset(marketplace, known: list) -> None:
    """The same starting point for every round: only the known half stored."""
    from bids.models import Posting
    from bids.services.postings import posting_upsert_many

    Posting.objects.all().delete()
    posting_upsert_many(marketplace=marketplace, found=known)


def raw_upsert(marketplace_id: int, found: list) -> None:
    import psycopg
    from psycopg.types.json import Jsonb

    now = datetime.now(UTC)
    rows = [
        (marketplace_id, p.external_id, p.title, p.description, p.url, p.budget_min_cents, p.budget_max_cents,
         p.currency, Jsonb(list(p.skills)), p.posted_at, now, now, Jsonb(p.raw), "pending", Jsonb([]))
        for p in found
    ]  # fmt: skip
    with psycopg.connect(PG_URL) as conn, conn.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO bids_posting ({COLUMNS}) VALUES ({', '.join(['%s'] * 15)}) "  # noqa: S608 (our own columns)
            "ON CONFLICT (marketplace_id, external_id) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at",
            rows,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postings", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    setup()
    from django.db import connection

    from bids.models import Marketplace, Posting
    from bids.services.postings import posting_upsert_many

    marketplace = Marketplace.objects.create(slug="bench", name="Bench", kind="feed", base_url="unused.json")
    found = found_postings(args.postings)
    known = found[: args.postings // 2]
    timings: dict[str, list[float]] = {"service": [], "raw": []}
    for round_number in range(args.rounds):
        for way in ("service", "raw") if round_number % 2 == 0 else ("raw", "service"):
            reset(marketplace, known)
            connection.close()  # each way opens its own connection inside the timing
            started = time.perf_counter()
            if way == "service":
                new = posting_upsert_many(marketplace=marketplace, found=found)
                assert new == args.postings - len(known), new
            else:
                raw_upsert(marketplace.pk, found)
            timings[way].append(time.perf_counter() - started)
            assert Posting.objects.count() == args.postings
    rate = {way: args.postings / statistics.median(seconds) for way, seconds in timings.items()}
    print(f"Postings per round: {args.postings} ({len(known)} known, {args.postings - len(known)} new), "
          f"{args.rounds} rounds each, alternating")  # fmt: skip
    for way in ("service", "raw"):
        print(f"  {way:8} median {statistics.median(timings[way]) * 1000:8.1f} ms  {rate[way]:9.0f} rows/s")
    print(f"  service / raw: {rate['service'] / rate['raw']:.2f} (target ≥ 0.50)")


if __name__ == "__main__":
    main()
