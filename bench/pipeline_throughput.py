"""Work pipeline scale-out (docs/agents.md): paid data tasks worked by real Celery workers.

Creates N paid data-analysis tasks on the bundled CSV (baseline agent, no model) in a PostgreSQL
database of its own, with no worker running; then starts W worker processes (prefork, concurrency
C each) on a Redis broker, sends every task's message twice (a duplicate for each), and waits
until no task is left to work. Prints the time, tasks per second, and the checks: every task
completed, one completion event, one attempt and one set of deliverables each.

    .venv/bin/python bench/pipeline_throughput.py [--tasks 200] [--workers 2] [--concurrency 2]

Informational: the figure depends on the machine. Needs PostgreSQL on 127.0.0.1:5432 and Redis on
127.0.0.1:6379 (database 14, flushed).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATABASE = "agency_bench_pipeline"
PG_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
REDIS_URL = "redis://127.0.0.1:6379/14"


def setup(private_root: str) -> None:
    import psycopg
    import redis

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    redis.Redis.from_url(REDIS_URL).flushdb()
    os.environ.update(
        AGENCY_DOTENV="false",
        DATABASE_URL=PG_URL,
        CELERY_BROKER_URL=REDIS_URL,
        PRIVATE_MEDIA_ROOT=private_root,
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="agency.settings",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def tasks_create(count: int) -> list[int]:
    """Paid tasks whose hand-over is not sent: the benchmark sends the messages itself."""
    from agency.celery import app
    from agency.models import Domain, Task
    from agency.services.tasks import TaskOrder, task_create
    from agency.services.uploads import upload_validate

    app.conf.task_always_eager = False
    path = ROOT / "agency" / "samples" / "regional_sales.csv"
    ids = []
    domain = Domain.objects.get(slug="data_analysis")
    for i in range(count):
        with path.open("rb") as file:
            upload = upload_validate(name=path.name, file=file, size=path.stat().st_size)
            order = TaskOrder(domain=domain, title=f"Bench task {i}", description="Sales by region",
                              complexity="simple", urgency="standard", client_email=f"bench{i % 20}@example.com",
                              upload=upload)  # fmt: skip
            ids.append(task_create(order=order, payment=Task.Payment.PREPAID, actor="bench")[0].pk)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as private_root:
        setup(private_root)
        from django.db.models import Count

        from agency.models import Attempt, Deliverable, Task, TaskEvent
        from agency.tasks import task_work

        ids = tasks_create(args.tasks)
        print(f"{len(ids)} paid tasks created; starting {args.workers} workers x {args.concurrency}")
        from tests.processes import worker_start

        # The later --concurrency wins over worker_start's own.
        workers = [
            worker_start(os.environ.copy(), f"--concurrency={args.concurrency}", "-n", f"bench{i}@%h", "-l", "WARNING")
            for i in range(args.workers)
        ]
        try:
            started = time.monotonic()
            for task_id in ids + ids:  # every message twice
                task_work.delay(task_id)
            open_statuses = ["paid", "planning", "processing", "reviewing"]
            while Task.objects.filter(pk__in=ids, status__in=open_statuses).exists():
                if time.monotonic() - started > 900:
                    raise SystemExit("gave up after 900 s")
                time.sleep(0.2)
            elapsed = time.monotonic() - started
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=60)
        statuses = dict(Task.objects.filter(pk__in=ids).values_list("status").annotate(n=Count("id")))
        completions = TaskEvent.objects.filter(task__in=ids, to_status="completed").count()
        attempts = Attempt.objects.filter(task__in=ids).count()
        deliverables = Deliverable.objects.filter(task__in=ids).count()
    print(f"statuses: {statuses}")
    print(f"completion events: {completions}, attempts: {attempts}, deliverables: {deliverables} (2 per task)")
    duplicates = (completions - len(ids)) + (attempts - len(ids)) + (deliverables - 2 * len(ids))
    print(f"duplicates: {duplicates}")
    print(f"{len(ids)} tasks in {elapsed:.1f} s: {len(ids) / elapsed:.1f} tasks/s")


if __name__ == "__main__":
    main()
