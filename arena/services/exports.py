"""Training data exports: the teacher's approved work as supervised examples and the arena's decided
competitions as preference pairs, as JSONL files for fine-tuning (docs/arena.md).

Every text is redacted (e-mail addresses, phone numbers) before anything else looks at it, so
duplicates and identical pairs are judged on what is written. A line's split comes from a hash of
its own content: a rerun puts every line where it was, and new rows never move old lines. Files are
written under temporary names in the output directory and moved into place once complete, so a
reader finds the previous file or the new one, never half of one.
"""

import hashlib
import json
import os
import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from django.db.models import Prefetch
from django.utils import timezone

from agency.errors import DomainError
from agency.models import Domain, Task, TrainingExample
from arena.models import ArenaResult, Competition

TRAIN, HELDOUT = "train", "heldout"
SFT, OPENAI, TRL = "sft", "preferences.openai", "preferences.trl"
PREFERENCES = "preferences"  # a pair: one line in each of OPENAI and TRL
FILES = tuple(f"{kind}.{split}.jsonl" for kind in (SFT, OPENAI, TRL) for split in (TRAIN, HELDOUT))
MANIFEST = "manifest.json"
CHUNK = 500

# An address is one run of address characters, so a match starts only where a run starts: the
# lookbehind keeps a long run without "@" (a base64 blob) from being rescanned at every position.
EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}(?![\w-])")
# Phone numbers in the shapes clients write them. Plain digit runs (amounts, ids) and dates are left
# alone: a number needs a leading "+", an area code in brackets, or 3-3-4 digits with one separator.
PHONE = re.compile(
    r"""
    (?<![\w+])(?<!\d[.,-])                          # not the tail of a word or of a longer number
    (?:
        \+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}         # +44 20 7946 0958, +1-555-123-4567, +44 (0)20 …
      | (?:1[ .-]?)?\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}    # (555) 123-4567
      | (?:1[.-])?\d{3}(?P<sep>[.-])\d{3}(?P=sep)\d{4}  # 555-123-4567, 555.123.4567
    )
    (?![\w+]|[.,-]\d)                               # nor the head of one
    """,
    re.VERBOSE,
)
PHONE_DIGITS = range(8, 16)  # E.164 allows at most 15


class ExportRefused(DomainError):
    code = "export_refused"


@dataclass
class Redaction:
    """Redacts texts and counts what it replaced."""

    emails: int = 0
    phones: int = 0

    def text(self, text: str) -> str:
        text, emails = EMAIL.subn("[email]", text)
        self.emails += emails
        return PHONE.sub(self._phone, text)

    def _phone(self, match: re.Match) -> str:
        if sum(char.isdigit() for char in match[0]) not in PHONE_DIGITS:
            return match[0]
        self.phones += 1
        return "[phone]"

    def value(self, value):
        """Every string in a JSON value (message contents, text parts), keys and structure kept."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        return value


def text_redact(text: str) -> str:
    return Redaction().text(text)


@dataclass(frozen=True)
class Manifest:
    generated_at: str
    settings: dict
    files: dict  # name -> {"lines", "sha256"}
    domains: dict  # slug -> {"sft"|"preferences" -> {"train", "heldout"}}
    sources: dict
    hygiene: dict

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Tally:
    sources: Counter = field(default_factory=Counter)
    hygiene: Counter = field(default_factory=Counter)
    duplicates: Counter = field(default_factory=Counter)
    domains: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(Counter)))


def task_prompt_messages(task: Task) -> list[dict]:
    """The prompt of a preference pair. The sides worked from richer prompts (plans, input files);
    this is the request as a tuned model will be given it: the domain, the task's title and description."""
    system = (
        f"You are an expert in {task.domain.name.lower()} work at a professional services agency. "
        "Write the complete deliverable for the client's task."
    )
    user = f"{task.title}\n\n{task.description}" if task.description.strip() else task.title
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def preference_order(first: ArenaResult, second: ArenaResult) -> tuple[ArenaResult, ArenaResult] | None:
    """(chosen, rejected) when the results say which is better: only one passed the gate, or both
    passed and one made more. Equal profits teach nothing (the join decides those by cost or incumbency)."""
    if first.passed_gate != second.passed_gate:
        return (first, second) if first.passed_gate else (second, first)
    if first.passed_gate and first.profit_cents != second.profit_cents:
        return (first, second) if first.profit_cents > second.profit_cents else (second, first)
    return None


def json_line(value) -> bytes:
    text = json.dumps(value, ensure_ascii=False)
    # Valid raw inside JSON strings, but str.splitlines() and some JSONL readers break lines there.
    for char in ("\u2028", "\u2029", "\x85"):
        text = text.replace(char, f"\\u{ord(char):04x}")
    return (text + "\n").encode()


# --- Rows to lines --------------------------------------------------------------------------------


def _sft_records(*, tally: _Tally, on_row: Callable[[], None]) -> Iterator[tuple[str, bytes, Redaction]]:
    rows = TrainingExample.objects.order_by("pk").values("domain__slug", "messages", "response")
    for row in rows.iterator(chunk_size=CHUNK):
        on_row()
        tally.sources["training_examples"] += 1
        messages, response = row["messages"], row["response"]
        if not isinstance(messages, list) or not messages or not response.strip():
            tally.hygiene["unusable_examples_dropped"] += 1
            continue
        redaction = Redaction()
        line = {"messages": [*redaction.value(messages), {"role": "assistant", "content": redaction.text(response)}]}
        yield row["domain__slug"], json_line(line), redaction


def _decided_competitions():
    finished = ArenaResult.objects.filter(state=ArenaResult.State.FINISHED).order_by("side")
    return (
        Competition.objects.filter(status=Competition.Status.DECIDED)
        .select_related("task__domain", "domain")
        .prefetch_related(Prefetch("results", queryset=finished))
        .order_by("pk")
    )


def _pair_records(*, tally: _Tally, on_row: Callable[[], None]) -> Iterator[tuple[str, bytes, bytes, Redaction]]:
    """(domain, OpenAI line, TRL line, redaction) per usable pair."""
    for competition in _decided_competitions().iterator(chunk_size=CHUNK):
        on_row()
        tally.sources["decided_competitions"] += 1
        results = list(competition.results.all())
        order = preference_order(*results) if len(results) == 2 else None
        if order is None:
            continue
        tally.sources["pairs"] += 1
        chosen, rejected = (result.response if result.response.strip() else result.summary for result in order)
        if not chosen.strip() or not rejected.strip():
            tally.hygiene["empty_pairs_dropped"] += 1
            continue
        redaction = Redaction()
        chosen, rejected = redaction.text(chosen), redaction.text(rejected)
        if chosen == rejected:
            tally.hygiene["identical_pairs_dropped"] += 1
            continue
        messages = redaction.value(task_prompt_messages(competition.task))
        openai = {
            "input": {"messages": messages},
            "preferred_output": [{"role": "assistant", "content": chosen}],
            "non_preferred_output": [{"role": "assistant", "content": rejected}],
        }
        trl = {"prompt": messages[-1]["content"], "chosen": chosen, "rejected": rejected}
        yield competition.domain.slug, json_line(openai), json_line(trl), redaction


# --- Files ----------------------------------------------------------------------------------------


@dataclass
class _Output:
    file: IO[bytes]
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    lines: int = 0


class _Outputs:
    """The export's files, written under temporary names in `out_dir` and moved into place by
    `publish`; left unpublished (an error), the temporary files are removed."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.outputs: dict[str, _Output] = {}

    def __enter__(self):
        for name in FILES:
            file = tempfile.NamedTemporaryFile(dir=self.out_dir, prefix=f".{name}.", suffix=".tmp", delete=False)
            self.outputs[name] = _Output(file)
        return self

    def write(self, name: str, line: bytes) -> None:
        output = self.outputs[name]
        output.file.write(line)
        output.digest.update(line)  # the file's sha256 without reading it back
        output.lines += 1

    def publish(self) -> dict:
        stats = {}
        for name, output in self.outputs.items():
            output.file.flush()
            os.fsync(output.file.fileno())
            output.file.close()
            os.replace(output.file.name, self.out_dir / name)
            stats[name] = {"lines": output.lines, "sha256": output.digest.hexdigest()}
        self.outputs = {}
        return stats

    def __exit__(self, *exc_info):
        for output in self.outputs.values():
            output.file.close()
            Path(output.file.name).unlink(missing_ok=True)


def _manifest_write(*, out_dir: Path, manifest: Manifest) -> None:
    with tempfile.NamedTemporaryFile("w", dir=out_dir, prefix=f".{MANIFEST}.", suffix=".tmp", delete=False) as file:
        json.dump(manifest.as_dict(), file, ensure_ascii=False, indent=2, sort_keys=True)
        file.write("\n")
    os.replace(file.name, out_dir / MANIFEST)


# --- The export -----------------------------------------------------------------------------------


def _settings_check(*, out_dir: Path, heldout_share: float, heldout_domains: Sequence[str]) -> None:
    if not 0 <= heldout_share < 1:
        raise ExportRefused(f"The held-out share must be at least 0 and below 1, not {heldout_share}.")
    known = set(Domain.objects.filter(slug__in=heldout_domains).values_list("slug", flat=True))
    unknown = sorted(set(heldout_domains) - known)
    if unknown:
        raise ExportRefused(f"No domain named {', '.join(unknown)}.")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportRefused(f"{out_dir} is a file, not a directory.")


def split_of(digest: bytes, *, domain: str, heldout_share: float, heldout_domains: frozenset[str]) -> str:
    """Whole domains when some are named; else the line's share of the hash space, the same for a line
    in every run (so each domain holds out about `heldout_share` of its lines)."""
    if heldout_domains:
        return HELDOUT if domain in heldout_domains else TRAIN
    return HELDOUT if int.from_bytes(digest[:8], "big") < heldout_share * 2**64 else TRAIN


def training_data_export(
    *,
    out_dir: Path,
    heldout_share: float = 0.1,
    heldout_domains: Sequence[str] = (),
    on_row: Callable[[], None] | None = None,
) -> Manifest:
    """Write the supervised examples and the preference pairs, split into train and held-out files,
    and their manifest into `out_dir` (created if missing), replacing a previous export's files.
    `heldout_domains` holds those domains out whole instead of a share of every domain."""
    out_dir = Path(out_dir)
    _settings_check(out_dir=out_dir, heldout_share=heldout_share, heldout_domains=heldout_domains)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportRefused(f"Cannot create {out_dir}: {exc.strerror}.") from None
    held = frozenset(heldout_domains)
    tally = _Tally()
    on_row = on_row or (lambda: None)
    # Digests of the lines kept so far: exact duplicates need the whole history, 32 bytes a line.
    seen: dict[str, set[bytes]] = {SFT: set(), PREFERENCES: set()}
    with _Outputs(out_dir) as outputs:
        for domain, line, redaction in _sft_records(tally=tally, on_row=on_row):
            digest = hashlib.sha256(line).digest()
            if digest in seen[SFT]:
                tally.duplicates[SFT] += 1
                continue
            seen[SFT].add(digest)
            split = split_of(digest, domain=domain, heldout_share=heldout_share, heldout_domains=held)
            outputs.write(f"{SFT}.{split}.jsonl", line)
            _kept(tally=tally, domain=domain, kind=SFT, split=split, redaction=redaction)
        for domain, openai, trl, redaction in _pair_records(tally=tally, on_row=on_row):
            # Keyed by the TRL line, which leaves out only the system message: a pair repeated in
            # another domain is a duplicate in both files, and both formats share the pair's split.
            digest = hashlib.sha256(trl).digest()
            if digest in seen[PREFERENCES]:
                tally.duplicates[PREFERENCES] += 1
                continue
            seen[PREFERENCES].add(digest)
            split = split_of(digest, domain=domain, heldout_share=heldout_share, heldout_domains=held)
            outputs.write(f"{OPENAI}.{split}.jsonl", openai)
            outputs.write(f"{TRL}.{split}.jsonl", trl)
            _kept(tally=tally, domain=domain, kind=PREFERENCES, split=split, redaction=redaction)
        files = outputs.publish()
    manifest = _manifest(tally=tally, files=files, heldout_share=heldout_share, heldout_domains=held)
    _manifest_write(out_dir=out_dir, manifest=manifest)
    return manifest


def _kept(*, tally: _Tally, domain: str, kind: str, split: str, redaction: Redaction) -> None:
    tally.domains[domain][kind][split] += 1
    tally.hygiene["emails_redacted"] += redaction.emails
    tally.hygiene["phones_redacted"] += redaction.phones


def _manifest(*, tally: _Tally, files: dict, heldout_share: float, heldout_domains: frozenset[str]) -> Manifest:
    hygiene = tally.hygiene
    by_domains = bool(heldout_domains)
    return Manifest(
        generated_at=timezone.now().isoformat(timespec="seconds"),
        settings={
            "split": "domains" if by_domains else "share",
            "heldout_share": None if by_domains else heldout_share,
            "heldout_domains": sorted(heldout_domains),
            "split_hash": "sha256 of the line (preferences: of the TRL line), first 8 bytes",
        },
        files=files,
        domains={
            slug: {kind: {split: kinds[kind][split] for split in (TRAIN, HELDOUT)} for kind in (SFT, PREFERENCES)}
            for slug, kinds in sorted(tally.domains.items())
        },
        sources={key: tally.sources[key] for key in ("training_examples", "decided_competitions", "pairs")},
        hygiene={
            "duplicates_dropped": {kind: tally.duplicates[kind] for kind in (SFT, PREFERENCES)},
            "identical_pairs_dropped": hygiene["identical_pairs_dropped"],
            "empty_pairs_dropped": hygiene["empty_pairs_dropped"],
            "unusable_examples_dropped": hygiene["unusable_examples_dropped"],
            "emails_redacted": hygiene["emails_redacted"],
            "phones_redacted": hygiene["phones_redacted"],
        },
    )
