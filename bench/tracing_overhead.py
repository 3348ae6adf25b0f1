"""Tracing overhead (docs/tracing.md): an API read with tracing fully on vs off.

Starts gunicorn servers of the same code side by side and drives them with
wrk in interleaved rounds, so machine noise hits all variants alike:

- off:      TRACING_ENABLED=false (no server span, no request log line, no instrumentation)
- on:       the default: lean server span, one JSON log line per request, Celery/httpx/psycopg instrumented
- on+otlp:  as "on", exporting sampled spans (OTEL_TRACES_SAMPLE_RATIO, 10 %) over OTLP/HTTP to a local sink
- stock:    OpenTelemetry's own Django middleware instead of ours (OTEL_DJANGO_INSTRUMENTATION=stock)

Each server has one sync worker; besides requests/s the script reads the
worker's CPU time per request. On a small shared machine both move by several
per cent between runs, so `--instructions` adds a deterministic figure: the
same request run in-process under valgrind, counted in CPU instructions.

    .venv/bin/python bench/tracing_overhead.py [--rounds 5] [--seconds 5] [--database postgres|sqlite]
                                              [--instructions]

Target: "on" at most 5 % slower than "off" (goal 2 %).
"""

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "agency_bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OtlpSink:
    """Accepts OTLP/HTTP span exports and counts them, like a collector would."""

    def __init__(self):
        self.exports = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.exports += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def base_env(database_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OTEL_", "CELERY_", "LOG_"))}
    env.update(
        DJANGO_DEBUG="false",
        DJANGO_SECURE_SSL_REDIRECT="false",  # gunicorn serves plain http here
        DJANGO_SECRET_KEY="bench-" + "x" * 40,
        DATABASE_URL=database_url,
        API_THROTTLE_RATE="100000000/min",
        LOG_LEVEL="INFO",
        LOG_FORMAT="json",
        AGENCY_DOTENV="false",
    )
    return env


def manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout


def prepare_database(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.sqlite3'}"
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", PG_BENCH_DB], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", PG_BENCH_DB], check=True)
    return f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}"


class Server:
    def __init__(self, name: str, env: dict, log_path: Path):
        self.name = name
        self.port = free_port()
        self.log = open(log_path, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "agency.wsgi", "-b", f"127.0.0.1:{self.port}", "-w", "1"],
            cwd=ROOT, env=env, stdout=self.log, stderr=self.log,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str, key: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {key}"})
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"{self.name} server did not come up; see its log")

    def worker_cpu_seconds(self) -> float:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        total = 0
        for pid in children:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / CLOCK_TICKS

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def wrk(url: str, key: str, seconds: int, connections: int) -> tuple[float, int, int]:
    """Returns (requests/s, requests, non-2xx responses)."""
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-H", f"Authorization: Bearer {key}", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    total = int(re.search(r"(\d+) requests in", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return rate, total, int(errors.group(1)) if errors else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--path", default="/api/v1/keys?page_size=20", help="The API read to measure.")
    parser.add_argument("--instructions", action="store_true", help="Also count instructions under valgrind.")
    parser.add_argument(
        "--variants", default="off,on,on+otlp,stock,off-again", help="Comma-separated subset to run (off always runs)."
    )
    parser.add_argument("--in-process", type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process is not None:
        return in_process_requests(args.path, args.in_process)
    if not shutil.which("wrk"):
        sys.exit("wrk is needed (Debian: apt-get install wrk)")

    workdir = Path(tempfile.mkdtemp(prefix="agency-bench-"))
    env = base_env(prepare_database(args.database, workdir))
    manage(env, "migrate", "--verbosity", "0")
    for i in range(25):  # something to list
        manage(env, "create_api_key", "--name", f"bench {i}", "--scope", "read")
    key = manage(env, "create_api_key", "--name", "bench operator", "--scope", "operator").strip().splitlines()[-1]

    sink = OtlpSink()
    variants = {
        "off": {**env, "TRACING_ENABLED": "false"},
        "on": {**env, "TRACING_ENABLED": "true"},
        "on+otlp": {**env, "TRACING_ENABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url},
        "stock": {**env, "TRACING_ENABLED": "true", "OTEL_DJANGO_INSTRUMENTATION": "stock"},
        # A second, identical baseline: how far apart two equal servers land is the noise floor.
        "off-again": {**env, "TRACING_ENABLED": "false"},
    }
    chosen = args.variants.split(",")
    variants = {name: variants[name] for name in ["off", *chosen] if name in variants}  # "off" is the baseline
    servers = {name: Server(name, variant_env, workdir / f"{name}.log") for name, variant_env in variants.items()}
    rates: dict[str, list[float]] = {name: [] for name in servers}
    cpu_ms: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for server in servers.values():
            server.wait_ready(args.path, key)
            wrk(server.url + args.path, key, 2, args.connections)  # warm up
        print(f"API read: GET {args.path} on {args.database}, {args.rounds} rounds x {args.seconds}s per variant")
        for round_no in range(1, args.rounds + 1):
            order = list(servers.values())
            if round_no % 2 == 0:
                order.reverse()  # no variant always runs first
            for server in order:
                cpu_before = server.worker_cpu_seconds()
                rate, total, errors = wrk(server.url + args.path, key, args.seconds, args.connections)
                if errors:
                    raise RuntimeError(f"{server.name}: {errors} non-2xx responses; see {workdir}")
                rates[server.name].append(rate)
                cpu_ms[server.name].append((server.worker_cpu_seconds() - cpu_before) * 1000 / total)
            print(f"  round {round_no}: " + "  ".join(f"{n} {rates[n][-1]:7.1f} req/s" for n in servers))
    finally:
        for server in servers.values():
            server.stop()

    report(rates, cpu_ms)
    print(f"OTLP exports received by the sink: {sink.exports}")
    if args.instructions:
        count_instructions(variants, args.path, key)
    sink.server.shutdown()
    shutil.rmtree(workdir, ignore_errors=True)


def report(rates: dict[str, list[float]], cpu_ms: dict[str, list[float]]) -> None:
    """Medians, and the median of per-round ratios against "off".

    Throughput on a shared machine drifts by tens of per cent within minutes;
    a ratio taken inside one round compares variants measured seconds apart,
    which cancels most of that drift.
    """

    def paired(values: dict[str, list[float]], name: str) -> float:
        return statistics.median(v / o for v, o in zip(values[name], values["off"], strict=True))

    print()
    print(
        f"{'variant':<10}{'req/s':>9}{'vs off':>9}{'CPU ms/req':>12}{'vs off':>9}   (medians; ratios paired by round)"
    )
    for name in rates:
        print(
            f"{name:<10}{statistics.median(rates[name]):>9.1f}{paired(rates, name):>9.3f}"
            f"{statistics.median(cpu_ms[name]):>12.3f}{paired(cpu_ms, name):>9.3f}"
        )
    print()
    for name in [n for n in rates if n != "off"]:
        slower = 100 * (1 - paired(rates, name))
        more_cpu = 100 * (paired(cpu_ms, name) - 1)
        print(f"{name}: {slower:+.1f} % req/s, {more_cpu:+.1f} % CPU per request vs off")
    print("Target for 'on': at most 5 % slower (goal 2 %); 'off-again' shows the noise floor.")


def in_process_requests(path: str, n: int) -> None:
    """Child mode for --instructions: n requests through the full stack, in this process."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agency.settings")
    import django

    django.setup()
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {os.environ['BENCH_KEY']}")
    for _ in range(20 + n):  # 20 to warm caches and connections
        response = client.get(path)
        assert response.status_code == 200, response.status_code


def count_instructions(variants: dict, path: str, key: str, n: int = 100) -> None:
    """Instructions per request: (run with 20+n requests - run with 20) / n, per variant."""
    if not shutil.which("valgrind"):
        print("valgrind not found: instruction counts skipped (Debian: apt-get install valgrind)")
        return

    def instructions(env: dict, requests: int) -> int:
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
             "--path", path, "--in-process", str(requests)],
            cwd=ROOT, env={**env, "BENCH_KEY": key, "PYTHONHASHSEED": "0"}, capture_output=True, text=True,
        )  # fmt: skip
        found = re.search(r"Collected : (\d+)", result.stderr)
        if result.returncode != 0 or not found:
            raise RuntimeError(f"valgrind run failed: {result.stderr[-2000:]}")
        return int(found.group(1))

    print()
    print(f"Instructions per request (valgrind, in-process, {n} requests), slow: a few minutes")
    for env in variants.values():  # compile every .pyc first, or the first run would pay for it
        subprocess.run(
            [sys.executable, __file__, "--path", path, "--in-process", "0"],
            cwd=ROOT, env={**env, "BENCH_KEY": key}, check=True, capture_output=True,
        )  # fmt: skip
    per_request = {name: (instructions(env, n) - instructions(env, 0)) / n for name, env in variants.items()}
    base = per_request["off"]
    for name, count in per_request.items():
        print(f"{name:<10}{count:>14,.0f}{count / base:>9.3f}")


if __name__ == "__main__":
    main()
