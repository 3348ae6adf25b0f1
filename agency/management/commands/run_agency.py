import sys

from django.core.management.base import CommandError

from agency.cycle import CYCLE_STEPS, StepOutcome, cycle_run, step_name
from tracing.commands import TracedCommand


class Command(TracedCommand):
    help = "Run one agency cycle (every step in order) in this process and print what each step did."

    def add_arguments(self, parser):
        parser.add_argument(
            "--step",
            action="append",
            dest="steps",
            metavar="NAME",
            help="Run only this step (repeatable). Steps: " + ", ".join(step_name(p) for p in CYCLE_STEPS),
        )

    def handle(self, *args, steps=None, **options):
        selected = self._select(steps)
        total = len(selected)
        done = 0

        def report(outcome: StepOutcome) -> None:
            nonlocal done
            done += 1
            status = "ok" if outcome.ok else f"FAILED ({outcome.error})"
            details = ", ".join(f"{k}={v}" for k, v in outcome.summary.items())
            self.stdout.write(
                f"[{done}/{total}] {outcome.name}: {status} in {outcome.duration_ms} ms {details}".rstrip()
            )

        run, outcomes = cycle_run(steps=selected, on_step=report)
        failed = [o.name for o in outcomes if not o.ok]
        if failed:
            raise CommandError(f"Cycle #{run.pk}: {len(failed)} of {total} steps failed: {', '.join(failed)}")
        self.stdout.write(self.style.SUCCESS(f"Cycle #{run.pk} finished: {total} step{'s' if total != 1 else ''} ok."))
        sys.stdout.flush()

    def _select(self, names: list[str] | None) -> list[str]:
        if not names:
            return list(CYCLE_STEPS)
        by_name = {step_name(p): p for p in CYCLE_STEPS}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise CommandError(f"Unknown step(s): {', '.join(unknown)}. Known: {', '.join(by_name)}")
        return [by_name[n] for n in names]
