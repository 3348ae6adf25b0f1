from pathlib import Path

from django.core.management.base import CommandError
from tqdm import tqdm

from arena.services.exports import ExportRefused, training_data_export
from tracing.commands import TracedCommand


class Command(TracedCommand):
    help = (
        "Export the teacher's approved work (supervised examples) and the arena's decided competitions "
        "(preference pairs, OpenAI and TRL formats) as JSONL files for fine-tuning: redacted, deduplicated, "
        "split into train and held-out files, with a manifest (docs/arena.md). Safe to run twice: it replaces "
        "the same files."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="The directory to write to; created if missing.")
        parser.add_argument(
            "--heldout-share",
            type=float,
            default=None,
            help="Share of each domain's lines held out, by a hash of each line (default 0.1).",
        )
        parser.add_argument(
            "--heldout-domain",
            action="append",
            default=[],
            dest="heldout_domains",
            metavar="SLUG",
            help="Hold out this whole domain instead of a share of each (repeatable).",
        )

    def handle(self, *args, out, heldout_share=None, heldout_domains=(), **options):
        if heldout_share is not None and heldout_domains:
            raise CommandError("Give --heldout-share or --heldout-domain, not both.")
        on_tty = self.stdout.isatty()
        read = 0

        def progress():
            nonlocal read
            read += 1
            bar.update()
            if not on_tty and read % 1000 == 0:
                self.stdout.write(f"Read {read} rows…")

        with tqdm(unit="row", desc="Exporting", disable=not on_tty, file=self.stdout._out) as bar:
            try:
                manifest = training_data_export(
                    out_dir=Path(out),
                    heldout_share=0.1 if heldout_share is None else heldout_share,
                    heldout_domains=list(heldout_domains),
                    on_row=progress,
                )
            except ExportRefused as exc:
                raise CommandError(str(exc)) from None
        for name, entry in manifest.files.items():
            self.stdout.write(f"{name}: {entry['lines']} line{'s' if entry['lines'] != 1 else ''}")
        hygiene = manifest.hygiene
        self.stdout.write(
            self.style.SUCCESS(
                f"Exported to {out}: {manifest.sources['training_examples']} training example(s) and "
                f"{manifest.sources['pairs']} pair(s) read; dropped {sum(hygiene['duplicates_dropped'].values())} "
                f"duplicate(s), {hygiene['identical_pairs_dropped']} identical and "
                f"{hygiene['empty_pairs_dropped']} empty pair(s); redacted {hygiene['emails_redacted']} e-mail(s) "
                f"and {hygiene['phones_redacted']} phone number(s)."
            )
        )
