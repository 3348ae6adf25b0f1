from bids.services.bids import bids_reconcile_all
from tracing.commands import TracedCommand


class Command(TracedCommand):
    help = (
        "Settle bids left `submitting` and follow sent ones (won, lost, retracted) from each marketplace's "
        "own list of our bids (docs/bids.md). Safe to run twice at once: every change is a compare-and-set."
    )

    def handle(self, *args, **options):
        summary = bids_reconcile_all()
        for failure in summary.pop("failed"):
            self.stderr.write(f"Failed: {failure}")
        self.stdout.write(self.style.SUCCESS(", ".join(f"{value} {key}" for key, value in summary.items()) + "."))
