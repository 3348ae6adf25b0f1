"""Model gateway overhead (docs/gateway.md): `gateway_complete` vs a raw `openai` SDK call.

Both call the same local OpenAI-compatible fake server (tests/agency/fake_openai.py: one write
per answer, TCP_NODELAY), run as a process of its own so it never competes with the client for
one interpreter's lock, in interleaved rounds so machine noise hits both alike:

- raw:      `OpenAI(max_retries=0).chat.completions.create(...)`, one client reused
- gateway:  `gateway_complete(...)`: route lookup, breaker check, the same SDK, the ledger row
            written (SQLite in a temporary folder by default, or PostgreSQL), cost computed

    .venv/bin/python bench/gateway_overhead.py [--rounds 10] [--calls 200] [--database sqlite|postgres]

Prints the median and p99 per call of each, and the gateway's overhead (median minus median).
Target: at most 1 ms of median overhead.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PG_BENCH_URL = "postgres://postgres@127.0.0.1:5432/agency_bench_gateway"

MESSAGES = [{"role": "user", "content": "Summarise this table in one sentence."}]


def setup_django(database: str, workdir: str) -> None:
    os.environ["AGENCY_DOTENV"] = "false"
    os.environ["DATABASE_URL"] = PG_BENCH_URL if database == "postgres" else f"sqlite:///{workdir}/bench.sqlite3"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agency.settings")
    if database == "postgres":
        import psycopg

        with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS agency_bench_gateway")
            conn.execute("CREATE DATABASE agency_bench_gateway")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def route_at(url: str):
    from decimal import Decimal

    from agency.models import ModelDeployment, Provider, Route, RouteStep

    provider = Provider.objects.create(name="bench", kind="local", base_url=url)
    deployment = ModelDeployment.objects.create(
        provider=provider, model="fake", price_in_cents_per_1m=Decimal("250"), price_out_cents_per_1m=Decimal("1000")
    )
    route = Route.objects.create(name="bench")
    RouteStep.objects.create(route=route, deployment=deployment, position=0)
    return route


def timed(call, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200, help="Calls per variant per round.")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        setup_django(args.database, workdir)
        import openai

        from agency.gateway import gateway_complete
        from agency.models import ModelCall

        server = subprocess.Popen(
            [sys.executable, "-m", "tests.agency.fake_openai"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            url = server.stdout.readline().strip()
            route = route_at(url)
            raw_client = openai.OpenAI(base_url=url, api_key="no-key", max_retries=0, timeout=60)

            def raw() -> None:
                raw_client.chat.completions.create(model="fake", messages=MESSAGES, temperature=0)

            def gateway() -> None:
                gateway_complete(purpose="work", route=route, messages=MESSAGES)

            for warm in (raw, gateway):
                timed(warm, 50)
            samples: dict[str, list[float]] = {"raw": [], "gateway": []}
            medians: dict[str, list[float]] = {"raw": [], "gateway": []}
            for _ in range(args.rounds):
                for name, call in (("raw", raw), ("gateway", gateway)):
                    got = timed(call, args.calls)
                    samples[name] += got
                    medians[name].append(statistics.median(got))
            rows = ModelCall.objects.count()
        finally:
            server.stdin.close()  # the server stops when its input closes
            server.wait(timeout=10)

    print(f"{args.rounds} rounds x {args.calls} calls per variant, database {args.database}, {rows} ledger rows")
    print(f"{'variant':<10}{'median ms':>12}{'p99 ms':>10}")
    for name, got in samples.items():
        print(f"{name:<10}{statistics.median(got):>12.3f}{p99(got):>10.3f}")
    paired = [g - r for g, r in zip(medians["gateway"], medians["raw"], strict=True)]
    overhead = statistics.median(samples["gateway"]) - statistics.median(samples["raw"])
    print(
        f"gateway overhead: {overhead:.3f} ms median per call "
        f"(per-round medians paired: {statistics.median(paired):.3f} ms)"
    )
    print(
        f"ratio gateway/raw (median): {statistics.median(samples['gateway']) / statistics.median(samples['raw']):.2f}x"
    )
    print("target: <= 1 ms median overhead:", "met" if overhead <= 1.0 else "NOT met")


if __name__ == "__main__":
    main()
