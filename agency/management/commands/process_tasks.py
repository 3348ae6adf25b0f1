from collections import Counter

from django.core.management.base import CommandError
from tqdm import tqdm

from agency.pipeline import task_work_run, tasks_workable
from tracing.commands import TracedCommand


class Command(TracedCommand):
    help = (
        "Work paid tasks, and in-flight tasks whose worker's lease ran out, in this process, one "
        "after another (docs/agents.md). Safe beside Celery workers and other copies of this command: "
        "each task is claimed once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=None, help="Work at most this many tasks.")

    def handle(self, *args, limit=None, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.")
        ids = tasks_workable(limit=limit or 10_000)
        self.stdout.write(f"Tasks to work: {len(ids)}.")
        on_tty = self.stdout.isatty()
        results: Counter[str] = Counter()
        with tqdm(total=len(ids), unit="task", disable=not on_tty, file=self.stdout._out) as bar:
            for task_id in ids:
                result = task_work_run(task_id=task_id)
                results[result] += 1
                bar.update()
                if not on_tty:
                    self.stdout.write(f"Task #{task_id}: {result}")
        summary = ", ".join(f"{count} {result}" for result, count in sorted(results.items())) or "nothing to do"
        self.stdout.write(self.style.SUCCESS(f"Worked {len(ids)} task{'s' if len(ids) != 1 else ''}: {summary}."))
