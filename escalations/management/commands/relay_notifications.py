from django.core.management.base import CommandError
from django.utils import timezone

from escalations.outbox import escalation_timers_run, outbox_due_count, outbox_relay, relaying
from tracing.commands import TracedCommand

PROGRESS_EVERY = 50  # rows between plain progress lines when not on a terminal


class Command(TracedCommand):
    help = (
        "Fire due escalation timers, then send every due notification in the outbox. "
        "Safe to run while other relays (beat, other copies of this command) run."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=None, help="Send at most this many rows.")
        parser.add_argument("--no-timers", action="store_true", help="Only relay; do not fire escalation timers.")

    def handle(self, *args, limit=None, no_timers=False, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.")
        with relaying():  # rows the timers queue are sent below, not by an extra kick each
            self._relay(limit, no_timers)

    def _relay(self, limit: int | None, no_timers: bool) -> None:
        if not no_timers:
            fired = escalation_timers_run()
            self.stdout.write(f"Timers: {fired['reminded']} reminded, {fired['sent_to_secondary']} sent to secondary.")
        due = outbox_due_count(now=timezone.now())
        total = min(due, limit) if limit is not None else due
        self.stdout.write(f"Due notifications: {due}.")
        done = 0
        on_tty = self.stdout.isatty()

        def progress(status: str) -> None:
            nonlocal done
            done += 1
            if on_tty:
                width = 30
                filled = width * done // max(total, done)
                self.stdout.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{max(total, done)}", ending="")
            elif done % PROGRESS_EVERY == 0:
                self.stdout.write(f"{done} rows handled…")

        counts = outbox_relay(limit=limit, on_row=progress)
        if on_tty and done:
            self.stdout.write("")
        self.stdout.write(
            self.style.SUCCESS(
                f"Relayed: {counts['sent']} sent, {counts['retry_later']} to retry later, "
                f"{counts['dead']} dead, {counts['cancelled']} cancelled, {counts['lost']} taken over by another relay."
            )
        )
