from django.core.management.base import CommandError
from django.utils import timezone
from tqdm import tqdm

from escalations.outbox import outbox_due_count
from escalations.services import notifications_relay
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
        due = outbox_due_count(now=timezone.now())
        self.stdout.write(f"Due notifications: {due}.")
        on_tty = self.stdout.isatty()
        # A bar on a terminal; plain lines in logs. Timers may add rows, so the total is a floor.
        bar = tqdm(total=min(due, limit or due), unit="row", disable=not on_tty, file=self.stdout._out)

        def progress(outcome: str) -> None:
            bar.update()
            if not on_tty and bar.n % PROGRESS_EVERY == 0:
                self.stdout.write(f"{bar.n} rows handled…")

        with bar:
            counts = notifications_relay(limit=limit, timers=not no_timers, on_row=progress)
        self.stdout.write(f"Timers: {counts['reminded']} reminded, {counts['sent_to_secondary']} sent to secondary.")
        self.stdout.write(
            self.style.SUCCESS(
                f"Relayed: {counts['sent']} sent, {counts['retry_later']} to retry later, "
                f"{counts['dead']} dead, {counts['cancelled']} cancelled, {counts['lost']} taken over by another relay."
            )
        )
