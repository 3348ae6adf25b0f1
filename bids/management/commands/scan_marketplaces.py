from django.core.management.base import CommandError
from tqdm import tqdm

from bids.models import Marketplace
from bids.services.postings import marketplaces_scan
from tracing.commands import TracedCommand


class Command(TracedCommand):
    help = (
        "Scan marketplaces for postings, evaluate the new ones and bid where the approval policy allows "
        "(docs/bids.md). Without arguments: the marketplaces whose scan interval has passed. Safe to run "
        "twice at once: each marketplace's round is claimed once and each posting is evaluated once."
    )

    def add_arguments(self, parser):
        parser.add_argument("slugs", nargs="*", help="Scan these marketplaces now, due or not.")
        parser.add_argument("--all", action="store_true", help="Scan every active marketplace now.")

    def handle(self, *args, slugs=(), all=False, **options):
        unknown = sorted(set(slugs) - set(Marketplace.objects.filter(slug__in=slugs).values_list("slug", flat=True)))
        if unknown:
            raise CommandError(f"No marketplace named {', '.join(unknown)}.")
        on_tty = self.stdout.isatty()
        evaluated = 0

        def progress(posting):
            nonlocal evaluated
            evaluated += 1
            bar.update()
            if not on_tty and evaluated % 100 == 0:
                self.stdout.write(f"Evaluated {evaluated} postings…")

        with tqdm(unit="posting", desc="Evaluating", disable=not on_tty, file=self.stdout._out) as bar:
            summary = marketplaces_scan(slugs=list(slugs), force=all, on_posting=progress)
        for slug in summary["skipped"]:
            self.stdout.write(f"{slug}: another scan took this round.")
        for failure in summary["failed"]:
            self.stderr.write(f"Failed: {failure}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Scanned {summary['scanned']} marketplace(s): {summary['new']} new posting(s), "
                f"{summary['evaluated']} evaluated, {summary['bids']} bid(s) made."
            )
        )
        if summary["failed"] and not summary["scanned"]:
            raise CommandError("No marketplace could be scanned.")
