"""Admin changelists of the big tables: query count and render time, 100 vs 100 000 rows.

Fills three PostgreSQL databases of its own, copies of one migrated database with a superuser
logged in through Django's test client, with N rows in each table an operator pages through: tasks,
the model-call ledger, postings, bids and notifications (bulk inserts in batches, spread over every
status, the 3 seeded domains, 500 clients, 8 deployments of 4 providers, 4 marketplaces and 6
channels; a won bid has its task; every fourth task is escalated, with four notifications), N being
100, 1 000 and 100 000 (--small, ten times that, --large). Renders each changelist (first page, and
one filtered page) at 100 rows and at 100 000 rows (filtered pages against 1 000 rows, where they
are as full), the two sizes back to back. Prints, per page, the queries and the median render time
at each size and the ratio, then whether every page met the target (the same queries, time ≤ 1.5x).

Then the dashboard (docs/console.md) at 100 and at 100 000 rows, with its charts drawn (the cache
cleared before each render) and cached: the same queries at both sizes, and at 100 000 rows well
under a second (target: ≤ 500 ms). Tasks are completed and model calls made over the last 40 days, so
its 30-day money sums read most of the rows.

    .venv/bin/python bench/admin_scale.py [--small 100] [--large 100000] [--rounds 7]

Needs PostgreSQL on 127.0.0.1:5432.
"""

import argparse
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.fresh_postgres import database_copy, django_on_fresh_postgres  # noqa: E402

DATABASE = "agency_bench_admin"
BATCH = 5000
TARGET = 1.5
DASHBOARD_TARGET_MS = 500
PLAIN = [
    "/admin/agency/task/",
    "/admin/agency/modelcall/",
    "/admin/bids/posting/",
    "/admin/bids/bid/",
    "/admin/escalations/notification/",
]
# Each filter keeps at least a tenth of its table (statuses, outcomes, decisions are spread evenly):
# measured against 10 times the small size, the smallest table where the filtered page is as full
# (100 rows) as at 100 000.
FILTERED = [
    "/admin/agency/task/?status__exact=processing",
    "/admin/agency/modelcall/?outcome__exact=error",
    "/admin/bids/posting/?decision__exact=bid",
    "/admin/bids/bid/?status__exact=submitted",
    "/admin/escalations/notification/?status__exact=dead",
]


def setup() -> None:
    django_on_fresh_postgres(
        DATABASE, DJANGO_DEBUG="false", DJANGO_SECRET_KEY="bench-only-not-a-secret-" + "x" * 40,
        DJANGO_ALLOWED_HOSTS="testserver",
    )  # fmt: skip


def references() -> dict[str, list]:
    """The rows the big tables point at, made once: domains (seeded), clients, deployments,
    marketplaces, channels."""
    from agency.models import Client, Domain, ModelDeployment, Provider
    from bids.models import Marketplace
    from escalations.models import NotificationChannel

    clients = Client.objects.bulk_create(
        Client(email=f"client{i}@example.com", email_normalized=f"client{i}@example.com", name=f"Client {i}")
        for i in range(500)
    )
    providers = [
        Provider.objects.create(name=f"provider-{i}", kind="local" if i % 2 else "cloud", base_url=f"http://p{i}/v1")
        for i in range(4)
    ]
    deployments = [
        ModelDeployment.objects.create(provider=p, model=f"model-{j}", price_in_cents_per_1m=Decimal(250),
                                       price_out_cents_per_1m=Decimal(1000))
        for p in providers for j in range(2)
    ]  # fmt: skip
    marketplaces = [
        Marketplace.objects.create(slug=f"m{i}", name=f"M{i}", kind=Marketplace.Kind.values[i % 3], base_url="x")
        for i in range(4)
    ]
    kinds, tiers = list(NotificationChannel.Kind.values), list(NotificationChannel.Tier.values)
    channels = [
        NotificationChannel.objects.create(name=f"Channel {i}", slug=f"channel_{i}", kind=kinds[i % 5],
                                           tier=tiers[i % 2], target="http://127.0.0.1:9/")
        for i in range(6)
    ]  # fmt: skip
    return {
        "clients": clients, "domains": list(Domain.objects.order_by("slug")), "deployments": deployments,
        "marketplaces": marketplaces, "channels": channels,
    }  # fmt: skip


def fill(refs: dict[str, list], total: int) -> None:
    """`total` rows in each big table, `BATCH` at a time."""
    from django.db import connection

    for start in range(0, total, BATCH):
        batch = range(start, min(start + BATCH, total))
        tasks = _tasks(refs, batch)
        _model_calls(refs, batch, tasks)
        _bids(refs, batch, tasks)
        _notifications(refs, batch, tasks)
    with connection.cursor() as cursor:
        # Completed tasks and ledger rows spread over the last 40 days (bulk inserts stamp them now),
        # as the dashboard's 30-day sums find them.
        cursor.execute(
            "UPDATE agency_task SET completed_at = now() - (id % 40) * interval '1 day' WHERE status = 'completed'"
        )
        cursor.execute("UPDATE agency_modelcall SET created_at = now() - (id % 40) * interval '1 day'")
        # Where autovacuum leaves a table after bulk inserts (statistics, and a visibility map that
        # allows index-only counts); left to autovacuum, it would happen in the middle of a run.
        cursor.execute("VACUUM ANALYZE")


def _tasks(refs, batch: range) -> list:
    from agency.models import Task

    statuses, payments = list(Task.Status.values), list(Task.Payment.values)
    clients, domains = refs["clients"], refs["domains"]
    return Task.objects.bulk_create(
        Task(client=clients[i % len(clients)], domain=domains[i % 3], title=f"Sales totals per region {i}",
             base_price_cents=15000, discount_cents=750 * (i % 3), price_cents=15000 - 750 * (i % 3),
             status=statuses[i % len(statuses)], payment=payments[i % 3], is_high_value=i % 10 == 0,
             needs_operator=i % 25 == 0)
        for i in batch
    )  # fmt: skip


def _model_calls(refs, batch: range, tasks: list) -> None:
    from agency.models import ModelCall

    purposes, outcomes = list(ModelCall.Purpose.values), list(ModelCall.Outcome.values)
    deployments = refs["deployments"]
    ModelCall.objects.bulk_create(
        # A third of the calls belong to no task: evaluations and proposals of postings.
        ModelCall(deployment=deployments[i % 8], purpose=purposes[i % 6], task=task if i % 3 else None,
                  attempt=1 + i % 2, outcome=outcomes[i % 3], error_class="" if i % 3 == 0 else "APITimeoutError",
                  tokens_in=1500, tokens_out=500, cost_cents=Decimal("0.875"),
                  provider_cost_cents=Decimal("0.9") if i % 2 else None, latency_ms=800)
        for i, task in zip(batch, tasks, strict=True)
    )  # fmt: skip


def _bids(refs, batch: range, tasks: list) -> None:
    from django.utils import timezone

    from bids.models import ENDED, Bid, Posting

    decisions, statuses, now = list(Posting.Decision.values), list(Bid.Status.values), timezone.now()
    markets, domains = refs["marketplaces"], refs["domains"]
    postings = Posting.objects.bulk_create(
        Posting(marketplace=markets[i % 4], external_id=f"p-{i}", title=f"Sales totals per region {i}",
                budget_max_cents=20000, first_seen_at=now, last_seen_at=now, decision=decisions[i % 4],
                domain=None if decisions[i % 4] == "pending" else domains[i % 3], proposed_cents=15000)
        for i in batch
    )  # fmt: skip

    def bid(i: int, posting, task) -> Bid:
        status = statuses[i % len(statuses)]
        return Bid(marketplace_id=posting.marketplace_id, posting=posting, amount_cents=15000,
                   proposal="We will do it.", status=status, live_key=None if status in ENDED else "live",
                   remote_id=f"r-{i}" if status in ("submitted", "won", "lost") else None,
                   task=task if status == "won" else None)  # fmt: skip

    Bid.objects.bulk_create(bid(i, p, t) for i, p, t in zip(batch, postings, tasks, strict=True))


def _notifications(refs, batch: range, tasks: list) -> None:
    """Every fourth task escalated, with four notifications each (opened, reminder…, on the channels)."""
    from django.utils import timezone

    from escalations.models import Escalation, Notification

    reasons, severities, now = list(Escalation.Reason.values), list(Escalation.Severity.values), timezone.now()
    statuses, events, channels = list(Notification.Status.values), list(Notification.Event.values), refs["channels"]

    def escalation(n: int, task) -> Escalation:
        reason, resolved = reasons[n % len(reasons)], n % 3 == 0
        return Escalation(
            task=task, reason=reason, severity=severities[n % 2], idempotency_key=f"{reason}:1",
            status="resolved" if resolved else ("open", "acknowledged")[n % 2],
            live_key=None if resolved else reason, resolution="dismissed" if resolved else "",
        )  # fmt: skip

    def notification(i: int, escalation: Escalation) -> Notification:
        status = statuses[i % len(statuses)]
        return Notification(channel=channels[i % 6], escalation=escalation, event=events[i % len(events)],
                            dedup_key=f"n-{i}", status=status, attempts=i % 4, next_attempt_at=now,
                            sent_at=now if status == "sent" else None,
                            last_error="HTTP 503" if status == "dead" else "")  # fmt: skip

    escalations = Escalation.objects.bulk_create(escalation(n, t) for n, t in enumerate(tasks[::4]))
    Notification.objects.bulk_create(notification(i, escalations[n // 4]) for n, i in enumerate(batch))


def connection_to(database: str):
    """Another connection like Django's default one, to `database` (swapped in as the default)."""
    from django.db import connections

    default = connections["default"]
    return type(default)({**default.settings_dict, "NAME": database}, "default")


def measure(client, databases: dict, rounds: int) -> dict[tuple[str, str], tuple[int, float]]:
    """Each page at its two sizes back to back, in turns (the order swapped every round), so that the
    load of a shared machine weighs on both sides of a ratio alike. Round 0 warms up, uncounted."""
    from django.db import connection, connections
    from django.test.utils import CaptureQueriesContext

    times, queries = {}, {}
    for round_ in range(rounds + 1):
        for page in PLAIN + FILTERED:
            sizes = ["small" if page in PLAIN else "filled", "large"]
            for size in sizes if round_ % 2 else reversed(sizes):
                connections["default"] = databases[size]
                with CaptureQueriesContext(connection) as captured:
                    started = time.perf_counter()
                    response = client.get(page, secure=True)  # production settings redirect plain HTTP
                    elapsed = time.perf_counter() - started
                assert response.status_code == 200, (page, response.status_code)
                queries[size, page] = len(captured)
                times.setdefault((size, page), []).extend([elapsed] if round_ else [])
    return {key: (queries[key], statistics.median(found)) for key, found in times.items()}


def measure_dashboard(client, databases: dict, rounds: int) -> dict[tuple[str, str], tuple[int, float]]:
    """The dashboard at the small and the large size, back to back as the changelists: with its
    charts drawn (the cache cleared first), then cached."""
    from django.core.cache import cache
    from django.db import connection, connections
    from django.test.utils import CaptureQueriesContext

    times, queries = {}, {}
    for round_ in range(rounds + 1):
        for label, cold in (("charts drawn", True), ("charts cached", False)):
            for size in ("small", "large") if round_ % 2 else ("large", "small"):
                connections["default"] = databases[size]
                if cold:
                    cache.clear()
                else:
                    client.get("/admin/", secure=True)  # draws them once, if this size had not yet
                with CaptureQueriesContext(connection) as captured:
                    started = time.perf_counter()
                    response = client.get("/admin/", secure=True)
                    elapsed = time.perf_counter() - started
                assert response.status_code == 200, (label, response.status_code)
                queries[size, label] = len(captured)
                times.setdefault((size, label), []).extend([elapsed] if round_ else [])
    return {key: (queries[key], statistics.median(found)) for key, found in times.items()}


def report_dashboard(found: dict, args) -> bool:
    print(f"Dashboard at {args.large} rows against {args.small}, median of {args.rounds} rounds")
    print(f"  {'page':52} {'q small':>7} {'q large':>7} {'ms small':>8} {'ms large':>8} {'ratio':>6}")
    met = True
    for label in ("charts drawn", "charts cached"):
        (q_small, t_small), (q_large, t_large) = found["small", label], found["large", label]
        ok = q_small == q_large and t_large * 1000 <= DASHBOARD_TARGET_MS
        met &= ok
        print(f"  {'/admin/ (' + label + ')':52} {q_small:7} {q_large:7} {t_small * 1000:8.1f} {t_large * 1000:8.1f}"
              f" {t_large / t_small:5.2f}x{'' if ok else '  MISSED'}")  # fmt: skip
    print(f"The dashboard met its target (same queries, ≤ {DASHBOARD_TARGET_MS} ms at {args.large}): "
          f"{'yes' if met else 'NO'}")  # fmt: skip
    return met


def report(found: dict, args) -> None:
    print(f"Admin changelists at {args.large} rows against {args.small} (plain pages) and {10 * args.small} "
          f"(filtered pages, as full), median of {args.rounds} rounds")  # fmt: skip
    print(f"  {'page':52} {'q small':>7} {'q large':>7} {'ms small':>8} {'ms large':>8} {'ratio':>6}")
    met = True
    for page in PLAIN + FILTERED:
        (q_small, t_small), (q_large, t_large) = (
            found["small" if page in PLAIN else "filled", page],
            found["large", page],
        )
        ratio = t_large / t_small
        ok = q_small == q_large and ratio <= TARGET
        met &= ok
        print(f"  {page:52} {q_small:7} {q_large:7} {t_small * 1000:8.1f} {t_large * 1000:8.1f} {ratio:5.2f}x"
              f"{'' if ok else '  MISSED'}")  # fmt: skip
    print(f"Every page met the target (same queries, ratio ≤ {TARGET}x): {'yes' if met else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    setup()
    from django.contrib.auth import get_user_model
    from django.db import connection, connections
    from django.test import Client

    user = get_user_model().objects.create_superuser("bench", password="bench-password")  # noqa: S106
    client = Client()
    client.force_login(user)  # its session row goes into every copy below
    refs = references()
    connection.close()
    databases = {}
    for size, rows in [("small", args.small), ("filled", 10 * args.small), ("large", args.large)]:
        database_copy(DATABASE, f"{DATABASE}_{size}")
        connections["default"] = databases[size] = connection_to(f"{DATABASE}_{size}")
        fill(refs, rows)
    report(measure(client, databases, args.rounds), args)
    report_dashboard(measure_dashboard(client, databases, args.rounds), args)


if __name__ == "__main__":
    main()
