"""Exactly-once bidding under contention (docs/bids.md): 8 processes racing over the same postings.

Creates P postings (each a project on a loopback Freelancer, tests/bids/fake_marketplaces.py) on a
live marketplace in a PostgreSQL database of its own, then starts W processes
(`python -m tests.bids.bid_racer`) that all start at the same moment and each make and send the bid
of every posting, in its own shuffled order. Prints the time, bids per second, and the checks: one
bid row per posting, one placement per posting at the marketplace, no duplicate.

    .venv/bin/python bench/bid_race.py [--postings 500] [--processes 8]

Informational: the figure depends on the machine. Needs PostgreSQL on 127.0.0.1:5432.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.fresh_postgres import django_on_fresh_postgres  # noqa: E402

DATABASE = "agency_bench_bids"
TOKEN_ENV = "MARKETPLACE_FREELANCER_TOKEN"  # noqa: S105 (a variable name)


def setup() -> None:
    django_on_fresh_postgres(DATABASE)


def postings_create(server, count: int) -> list[int]:
    from django.utils import timezone

    from agency.models import Domain
    from bids.models import Marketplace, Posting

    marketplace = Marketplace.objects.create(
        slug="freelancer", name="Freelancer", kind=Marketplace.Kind.FREELANCER, base_url=server.url,
        credential_env=TOKEN_ENV, training_mode=False,
    )  # fmt: skip
    domain, now = Domain.objects.get(slug="data_analysis"), timezone.now()
    rows = []
    for i in range(count):
        project = server.project_add(f"Sales totals {i}", jobs=("Excel",), budget=(100, 200))
        rows.append(Posting(marketplace=marketplace, external_id=str(project["id"]), title=project["title"],
                            budget_min_cents=10000, budget_max_cents=20000, first_seen_at=now, last_seen_at=now,
                            decision=Posting.Decision.BID, domain=domain, proposed_cents=15000))  # fmt: skip
    return [posting.pk for posting in Posting.objects.bulk_create(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postings", type=int, default=500)
    parser.add_argument("--processes", type=int, default=8)
    args = parser.parse_args()
    setup()
    from bids.models import Bid
    from tests.bids.fake_marketplaces import FREELANCER_TOKEN, FakeFreelancer

    with FakeFreelancer() as server:
        ids = postings_create(server, args.postings)
        env = {**os.environ, TOKEN_ENV: FREELANCER_TOKEN}
        start_at = time.time() + 5  # every process has imported Django by then
        processes = []
        for n in range(args.processes):
            shuffled = random.Random(n).sample(ids, len(ids))  # noqa: S311 (an order, not a secret)
            order = [str(i) for i in shuffled]
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "tests.bids.bid_racer", str(start_at), *order],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            ))  # fmt: skip
        outputs = [process.communicate(timeout=1800)[0] for process in processes]
        elapsed = time.time() - start_at
        placed = Counter(body["project_id"] for body in server.placements)
        remote = len(server.bids)
    lines = [json.loads(line) for output in outputs for line in output.splitlines()]
    bids = Bid.objects.count()
    statuses = Counter(Bid.objects.values_list("status", flat=True))
    duplicates = sum(count - 1 for count in placed.values())
    print(f"{args.processes} processes x {args.postings} postings: {len(lines)} bid attempts in {elapsed:.1f} s")
    print(f"  bid rows {bids}, statuses {dict(statuses)}")
    print(f"  placements at the marketplace {sum(placed.values())}, remote bids {remote}, duplicates {duplicates}")
    print(f"  {bids / elapsed:.1f} bids/s (each posting's bid made and sent once)")
    ok = bids == remote == len(placed) == args.postings and duplicates == 0 and statuses == {"submitted": bids}
    print("  exactly once: " + ("yes" if ok else "NO"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
