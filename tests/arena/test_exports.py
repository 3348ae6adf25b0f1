import hashlib
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from agency.models import Attempt, TrainingExample
from agency.models.gateway import ModelDeployment, Provider
from arena.models import Competition
from arena.services.exports import task_prompt_messages, text_redact, training_data_export
from tests.agency.factories import TaskFactory, domain
from tests.arena.factories import CompetitionFactory, ProfileFactory, duel, result_add

pytestmark = pytest.mark.django_db

DATA_FILES = [
    "sft.train.jsonl",
    "sft.heldout.jsonl",
    "preferences.openai.train.jsonl",
    "preferences.openai.heldout.jsonl",
    "preferences.trl.train.jsonl",
    "preferences.trl.heldout.jsonl",
]


# --- Set-up -------------------------------------------------------------------------------------


def _teacher() -> ModelDeployment:
    provider, _ = Provider.objects.get_or_create(
        name="teacher", defaults={"kind": Provider.Kind.CLOUD, "base_url": "https://teacher.test/v1"}
    )
    deployment, _ = ModelDeployment.objects.get_or_create(provider=provider, model="teacher-large")
    return deployment


def _messages(question: str) -> list[dict]:
    return [
        {"role": "system", "content": "You are a careful legal assistant."},
        {"role": "user", "content": question},
    ]


def example_add(*, slug: str = "legal", question: str = "Review the lease.", response: str = "The lease is fine."):
    task = TaskFactory(domain=domain(slug), status="completed")
    attempt = Attempt.objects.create(
        task=task,
        profile=ProfileFactory(),
        number=1,
        outcome=Attempt.Outcome.APPROVED,
        finished_at=timezone.now(),
    )
    return TrainingExample.objects.create(
        task=task,
        attempt=attempt,
        domain=task.domain,
        teacher=_teacher(),
        purpose="work",
        messages=_messages(question),
        response=response,
    )


def pair_add(
    *,
    slug: str = "legal",
    title: str = "Review the lease",
    description: str = "Check the break clause.",
    a: dict,
    b: dict,
    winner: str | None = "a",
    reason: str = "gate",
) -> Competition:
    """A decided competition (no winner when `winner` is None) with both sides finished as `a` and `b` say."""
    competition = CompetitionFactory(task__domain=domain(slug), task__title=title, task__description=description)
    result_add(competition, "a", **a)
    result_add(competition, "b", **b)
    profile = {"a": competition.profile_a, "b": competition.profile_b, None: None}[winner]
    return duel(competition, winner=profile, reason=reason if winner else "none_passed")


def gate_pair(*, chosen: str = "A complete review.", rejected: str = "A half review.", **kwargs) -> Competition:
    return pair_add(
        a={"passed": True, "revenue": 1000, "response": chosen},
        b={"passed": False, "response": "", "summary": rejected},
        **kwargs,
    )


def export(out: Path, **kwargs):
    return training_data_export(out_dir=out, **kwargs)


def lines(out: Path, name: str) -> list[dict]:
    # splitlines() also breaks at U+2028 and friends: a line that survives it survives any JSONL reader.
    return [json.loads(line) for line in (out / name).read_text(encoding="utf-8").splitlines()]


def both_splits(out: Path, kind: str) -> list[dict]:
    return lines(out, f"{kind}.train.jsonl") + lines(out, f"{kind}.heldout.jsonl")


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


# --- Supervised examples ------------------------------------------------------------------------


def test_it_writes_a_training_example_as_its_messages_followed_by_the_answer(tmp_path):
    example_add(question="Is clause 4 enforceable?", response="Yes, within the notice period.")

    export(tmp_path)

    assert both_splits(tmp_path, "sft") == [
        {
            "messages": [
                {"role": "system", "content": "You are a careful legal assistant."},
                {"role": "user", "content": "Is clause 4 enforceable?"},
                {"role": "assistant", "content": "Yes, within the notice period."},
            ]
        }
    ]


def test_every_line_of_every_file_parses_with_the_documented_keys(tmp_path):
    for n in range(12):
        example_add(slug=("legal", "accounting")[n % 2], question=f"Question {n}?", response=f"Answer {n}.")
        gate_pair(slug=("legal", "accounting")[n % 2], title=f"Task {n}", chosen=f"Good {n}.", rejected=f"Bad {n}.")

    export(tmp_path, heldout_share=0.5)

    keys = {
        "sft": {"messages"},
        "preferences.openai": {"input", "preferred_output", "non_preferred_output"},
        "preferences.trl": {"prompt", "chosen", "rejected"},
    }
    for kind, expected in keys.items():
        rows = both_splits(tmp_path, kind)
        assert len(rows) == 12
        assert all(set(row) == expected for row in rows)


def test_duplicate_training_examples_are_kept_once(tmp_path):
    for _ in range(3):
        example_add(question="Same question?", response="Same answer.")
    example_add(question="Another question?", response="Same answer.")

    result = export(tmp_path)

    assert len(both_splits(tmp_path, "sft")) == 2
    assert result.hygiene["duplicates_dropped"]["sft"] == 2


def test_examples_that_differ_only_in_an_email_address_are_duplicates(tmp_path):
    example_add(question="Write to jane@example.com about it.")
    example_add(question="Write to bob@example.org about it.")

    export(tmp_path)

    assert len(both_splits(tmp_path, "sft")) == 1


def test_an_example_without_an_answer_is_dropped(tmp_path):
    example_add(response="  ")

    result = export(tmp_path)

    assert both_splits(tmp_path, "sft") == []
    assert result.hygiene["unusable_examples_dropped"] == 1


# --- Preference pairs ---------------------------------------------------------------------------


def test_the_side_that_alone_passed_the_gate_is_chosen(tmp_path):
    pair_add(
        a={"passed": False, "response": "", "summary": "Missed the break clause."},
        b={"passed": True, "revenue": 1000, "response": "Full review with the break clause."},
        winner="b",
    )

    export(tmp_path)

    (row,) = both_splits(tmp_path, "preferences.trl")
    assert (row["chosen"], row["rejected"]) == ("Full review with the break clause.", "Missed the break clause.")


def test_the_more_profitable_side_is_chosen_when_both_passed(tmp_path):
    pair_add(
        a={"passed": True, "revenue": 1000, "model_cost": "300", "response": "Costly review."},
        b={"passed": True, "revenue": 1000, "model_cost": "100", "response": "Lean review."},
        winner="b",
        reason="profit",
    )

    export(tmp_path)

    (row,) = both_splits(tmp_path, "preferences.trl")
    assert (row["chosen"], row["rejected"]) == ("Lean review.", "Costly review.")


def test_equal_profits_make_no_pair(tmp_path):
    pair_add(
        a={"passed": True, "revenue": 1000, "model_cost": "100", "response": "One review."},
        b={"passed": True, "revenue": 1000, "model_cost": "60", "compute_cost": "40", "response": "Another review."},
        winner="a",
        reason="incumbent",
    )

    export(tmp_path)

    assert both_splits(tmp_path, "preferences.trl") == []
    assert both_splits(tmp_path, "preferences.openai") == []


def test_a_competition_without_a_winner_makes_no_pair(tmp_path):
    pair_add(
        a={"passed": False, "model_cost": "10", "summary": "Could not read the file."},
        b={"passed": False, "model_cost": "50", "summary": "Timed out."},
        winner=None,
    )

    export(tmp_path)

    assert both_splits(tmp_path, "preferences.openai") == []


def test_a_competition_not_yet_decided_makes_no_pair(tmp_path):
    competition = CompetitionFactory()
    result_add(competition, "a", passed=True, revenue=1000, response="A complete review.")
    result_add(competition, "b", passed=False, summary="A half review.")

    export(tmp_path)

    assert competition.status == Competition.Status.RUNNING
    assert both_splits(tmp_path, "preferences.openai") == []


def test_an_empty_response_falls_back_to_the_summary(tmp_path):
    pair_add(
        a={"passed": True, "revenue": 1000, "response": "", "summary": "Reviewed; see the memo."},
        b={"passed": False, "response": "", "summary": "Gave up."},
    )

    export(tmp_path)

    (row,) = both_splits(tmp_path, "preferences.openai")
    assert row["preferred_output"] == [{"role": "assistant", "content": "Reviewed; see the memo."}]


def test_a_pair_with_an_empty_text_is_dropped(tmp_path):
    pair_add(
        a={"passed": True, "revenue": 1000, "response": "A complete review."},
        b={"passed": False, "response": "", "summary": ""},
    )

    result = export(tmp_path)

    assert both_splits(tmp_path, "preferences.trl") == []
    assert result.hygiene["empty_pairs_dropped"] == 1


def test_a_pair_with_identical_texts_is_dropped(tmp_path):
    gate_pair(chosen="The same memo.", rejected="The same memo.")

    result = export(tmp_path)

    assert both_splits(tmp_path, "preferences.trl") == []
    assert both_splits(tmp_path, "preferences.openai") == []
    assert result.hygiene["identical_pairs_dropped"] == 1


def test_a_pair_identical_once_redacted_is_dropped(tmp_path):
    gate_pair(chosen="Sent to jane@example.com.", rejected="Sent to bob@example.org.")

    result = export(tmp_path)

    assert both_splits(tmp_path, "preferences.trl") == []
    assert result.hygiene["identical_pairs_dropped"] == 1


def test_duplicate_pairs_are_kept_once(tmp_path):
    gate_pair(title="Review the lease", chosen="Good.", rejected="Bad.")
    gate_pair(title="Review the lease", chosen="Good.", rejected="Bad.")
    gate_pair(title="Review the lease", chosen="Better.", rejected="Bad.")

    result = export(tmp_path)

    assert len(both_splits(tmp_path, "preferences.openai")) == 2
    assert len(both_splits(tmp_path, "preferences.trl")) == 2
    assert result.hygiene["duplicates_dropped"]["preferences"] == 1


def test_the_prompt_names_the_domain_and_carries_the_task():
    task = TaskFactory(domain=domain("data_analysis"), title="Churn by cohort", description="Use the attached CSV.")

    system, user = task_prompt_messages(task)

    assert system["role"] == "system" and "data analysis" in system["content"]
    assert user == {"role": "user", "content": "Churn by cohort\n\nUse the attached CSV."}


def test_the_openai_line_is_the_prompt_and_one_assistant_message_each_side(tmp_path):
    gate_pair(title="Review the lease", description="Check the break clause.", chosen="Good.", rejected="Bad.")

    export(tmp_path)

    (row,) = both_splits(tmp_path, "preferences.openai")
    assert [message["role"] for message in row["input"]["messages"]] == ["system", "user"]
    assert row["input"]["messages"][1]["content"] == "Review the lease\n\nCheck the break clause."
    assert row["preferred_output"] == [{"role": "assistant", "content": "Good."}]
    assert row["non_preferred_output"] == [{"role": "assistant", "content": "Bad."}]


def test_the_trl_line_has_exactly_a_prompt_chosen_and_rejected_string(tmp_path):
    gate_pair(title="Review the lease", description="Check the break clause.", chosen="Good.", rejected="Bad.")

    export(tmp_path)

    (row,) = both_splits(tmp_path, "preferences.trl")
    assert row == {"prompt": "Review the lease\n\nCheck the break clause.", "chosen": "Good.", "rejected": "Bad."}


# --- Redaction ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "+1-555-123-4567",
        "+4915112345678",
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "1-555-123-4567",
    ],
)
def test_text_redact_replaces_a_phone_number(phone):
    assert text_redact(f"Call {phone} today.") == "Call [phone] today."


@pytest.mark.parametrize(
    "text",
    [
        "Total 1,234.56 USD",
        "$1,234,567.89",
        "Fiscal year 2026",
        "Due 2026-12-01 at 10:30",
        "Items: 42, 7 and 12345",
        "Version 1.2.3 on 192.168.1.100",
        "Growth of 3.14159 %",
        "Reference 5551234567",
        "ISBN 978-3-16-148410-0",
        "SSN-like 123-45-6789",
        "Deltas +10 20 30",
    ],
)
def test_text_redact_keeps_ordinary_numbers_and_dates(text):
    assert text_redact(text) == text


@pytest.mark.parametrize("email", ["jane@example.com", "jane.doe+tag@mail.example.co.uk", "jürgen@bücher.de"])
def test_text_redact_replaces_an_email_address(email):
    assert text_redact(f"Write to {email}, please.") == "Write to [email], please."


def test_planted_emails_and_phones_are_gone_from_every_file(tmp_path):
    example_add(question="Client jane@example.com, +44 20 7946 0958.", response="Called (555) 123-4567.")
    pair_add(
        title="Lease for bob@example.org",
        description="Landlord: 555-123-4567",
        a={"passed": True, "revenue": 1000, "response": "Reply to carol@example.net"},
        b={"passed": False, "summary": "Tried 555.123.4567"},
    )

    result = export(tmp_path)

    planted = ["jane@example.com", "7946 0958", "123-4567", "bob@example.org", "carol@example.net", "123.4567"]
    for name in DATA_FILES:
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert not [value for value in planted if value in text], name
    assert (result.hygiene["emails_redacted"], result.hygiene["phones_redacted"]) == (3, 4)


def test_ordinary_numbers_and_dates_survive_the_export(tmp_path):
    example_add(response="Invoice 2026-0042: 1,234.56 USD due 2026-12-01 for fiscal 2026, 3 items.")

    export(tmp_path)

    (row,) = both_splits(tmp_path, "sft")
    assert row["messages"][-1]["content"] == "Invoice 2026-0042: 1,234.56 USD due 2026-12-01 for fiscal 2026, 3 items."


def test_non_ascii_text_is_written_as_utf8(tmp_path):
    example_add(response="Gebühr: 1.200 € — naïve")

    export(tmp_path, heldout_share=0)

    assert "Gebühr: 1.200 € — naïve".encode() in (tmp_path / "sft.train.jsonl").read_bytes()


def test_a_line_separator_inside_a_text_stays_inside_its_line(tmp_path):
    example_add(response="First part\u2028second part\u2029third\x85fourth")

    export(tmp_path)

    (row,) = both_splits(tmp_path, "sft")
    assert row["messages"][-1]["content"] == "First part\u2028second part\u2029third\x85fourth"


# --- The split ----------------------------------------------------------------------------------


def test_a_held_out_domain_goes_whole_to_the_held_out_files(tmp_path):
    for n in range(5):
        example_add(slug="legal", response=f"legal answer {n}")
        example_add(slug="accounting", response=f"accounting answer {n}")
        gate_pair(slug="legal", title=f"legal task {n}")
        gate_pair(slug="accounting", title=f"accounting task {n}")

    export(tmp_path, heldout_domains=["legal"])

    heldout = [row["messages"][-1]["content"].split()[0] for row in lines(tmp_path, "sft.heldout.jsonl")]
    train = [row["messages"][-1]["content"].split()[0] for row in lines(tmp_path, "sft.train.jsonl")]
    assert (heldout, train) == (["legal"] * 5, ["accounting"] * 5)
    assert [row["prompt"].split()[0] for row in lines(tmp_path, "preferences.trl.heldout.jsonl")] == ["legal"] * 5
    assert [row["prompt"].split()[0] for row in lines(tmp_path, "preferences.trl.train.jsonl")] == ["accounting"] * 5


def test_a_share_holds_out_part_of_each_domain(tmp_path):
    for n in range(30):
        example_add(slug="legal", response=f"legal answer {n}")
        example_add(slug="accounting", response=f"accounting answer {n}")

    result = export(tmp_path, heldout_share=0.5)

    for slug in ("legal", "accounting"):
        counts = result.domains[slug]["sft"]
        assert counts["train"] > 0 and counts["heldout"] > 0
        assert counts["train"] + counts["heldout"] == 30


def test_a_share_of_zero_holds_out_nothing(tmp_path):
    for n in range(10):
        example_add(response=f"answer {n}")

    export(tmp_path, heldout_share=0)

    assert (len(lines(tmp_path, "sft.train.jsonl")), len(lines(tmp_path, "sft.heldout.jsonl"))) == (10, 0)


def test_two_runs_write_the_same_files(tmp_path):
    for n in range(20):
        example_add(slug=("legal", "accounting")[n % 2], response=f"answer {n}")
        gate_pair(title=f"task {n}")

    export(tmp_path / "first", heldout_share=0.3)
    export(tmp_path / "second", heldout_share=0.3)

    for name in DATA_FILES:
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes(), name
    assert lines(tmp_path / "first", "sft.heldout.jsonl")  # the comparison covers both splits


def test_new_rows_leave_earlier_lines_in_their_split(tmp_path):
    for n in range(20):
        example_add(response=f"answer {n}")
    export(tmp_path, heldout_share=0.3)
    before = {split: lines(tmp_path, f"sft.{split}.jsonl") for split in ("train", "heldout")}

    for n in range(20, 40):
        example_add(response=f"answer {n}")
    export(tmp_path, heldout_share=0.3)

    for split, rows in before.items():
        after = lines(tmp_path, f"sft.{split}.jsonl")
        assert all(row in after for row in rows), split


def test_a_pair_goes_to_the_same_split_in_both_formats(tmp_path):
    for n in range(20):
        gate_pair(title=f"task {n}", chosen=f"good {n}")

    export(tmp_path, heldout_share=0.5)

    for split in ("train", "heldout"):
        openai = [row["preferred_output"][0]["content"] for row in lines(tmp_path, f"preferences.openai.{split}.jsonl")]
        trl = [row["chosen"] for row in lines(tmp_path, f"preferences.trl.{split}.jsonl")]
        assert openai == trl and openai, split


# --- Files and manifest -------------------------------------------------------------------------


def test_the_manifest_hashes_and_line_counts_match_the_files(tmp_path):
    for n in range(6):
        example_add(response=f"answer {n}")
        gate_pair(title=f"task {n}")

    export(tmp_path, heldout_share=0.5)

    files = manifest(tmp_path)["files"]
    assert sorted(files) == sorted(DATA_FILES)
    for name in DATA_FILES:
        data = (tmp_path / name).read_bytes()
        assert files[name] == {"sha256": hashlib.sha256(data).hexdigest(), "lines": data.count(b"\n")}, name


def test_the_manifest_counts_lines_per_domain_and_split(tmp_path):
    example_add(slug="legal", response="one")
    example_add(slug="legal", response="two")
    example_add(slug="accounting", response="three")
    gate_pair(slug="accounting")

    export(tmp_path, heldout_domains=["accounting"])

    assert manifest(tmp_path)["domains"] == {
        "accounting": {"sft": {"train": 0, "heldout": 1}, "preferences": {"train": 0, "heldout": 1}},
        "legal": {"sft": {"train": 2, "heldout": 0}, "preferences": {"train": 0, "heldout": 0}},
    }


def test_the_manifest_records_the_settings_and_the_time(tmp_path):
    before = timezone.now().replace(microsecond=0)

    export(tmp_path, heldout_share=0.25)

    written = manifest(tmp_path)
    assert written["settings"]["heldout_share"] == 0.25
    assert written["settings"]["heldout_domains"] == []
    assert before <= timezone.datetime.fromisoformat(written["generated_at"]) <= timezone.now()


def test_the_manifest_records_what_hygiene_removed(tmp_path):
    example_add(response="Same.")
    example_add(response="Same.")
    gate_pair(chosen="Same memo.", rejected="Same memo.")

    export(tmp_path)

    hygiene = manifest(tmp_path)["hygiene"]
    assert hygiene["duplicates_dropped"] == {"sft": 1, "preferences": 0}
    assert hygiene["identical_pairs_dropped"] == 1


def test_it_writes_the_six_files_and_the_manifest_and_nothing_else(tmp_path):
    example_add()

    export(tmp_path)

    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([*DATA_FILES, "manifest.json"])


def test_a_rerun_replaces_the_files(tmp_path):
    example_add(response="first")
    export(tmp_path)
    example_add(response="second")

    export(tmp_path)

    assert len(both_splits(tmp_path, "sft")) == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([*DATA_FILES, "manifest.json"])


def test_a_failed_export_leaves_the_previous_files_and_no_temporary_ones(tmp_path, monkeypatch):
    example_add(response="first")
    export(tmp_path)
    previous = {name: (tmp_path / name).read_bytes() for name in [*DATA_FILES, "manifest.json"]}
    gate_pair()

    def broken(task):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("arena.services.exports.task_prompt_messages", broken)
    with pytest.raises(RuntimeError):
        export(tmp_path)

    assert {name: (tmp_path / name).read_bytes() for name in previous} == previous
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(previous)


# --- The command --------------------------------------------------------------------------------


def run(*args) -> str:
    out = StringIO()
    call_command("export_training_data", *args, stdout=out)
    return out.getvalue()


def test_the_command_creates_the_directory_and_prints_a_summary(tmp_path):
    example_add()
    gate_pair()
    target = tmp_path / "exports" / "today"

    output = run("--out", str(target))

    assert (target / "manifest.json").exists()
    assert "sft.train.jsonl: 1 line" in output
    assert "1 training example(s) and 1 pair(s) read" in output


def test_the_command_can_run_twice(tmp_path):
    example_add()
    run("--out", str(tmp_path))

    run("--out", str(tmp_path))

    assert len(both_splits(tmp_path, "sft")) == 1


def test_the_command_holds_out_each_named_domain(tmp_path):
    example_add(slug="legal", response="legal answer")
    example_add(slug="accounting", response="accounting answer")
    example_add(slug="data_analysis", response="data answer")

    run("--out", str(tmp_path), "--heldout-domain", "legal", "--heldout-domain", "accounting")

    assert manifest(tmp_path)["settings"]["heldout_domains"] == ["accounting", "legal"]
    assert len(lines(tmp_path, "sft.heldout.jsonl")) == 2


@pytest.mark.parametrize("share", ["1", "1.5", "-0.1", "nan"])
def test_the_command_refuses_a_share_outside_zero_to_one(tmp_path, share):
    with pytest.raises(CommandError, match="share"):
        run("--out", str(tmp_path), "--heldout-share", share)
    assert list(tmp_path.iterdir()) == []


def test_the_command_refuses_an_unknown_domain(tmp_path):
    with pytest.raises(CommandError, match="No domain named astrology"):
        run("--out", str(tmp_path), "--heldout-domain", "legal", "--heldout-domain", "astrology")
    assert list(tmp_path.iterdir()) == []


def test_the_command_refuses_a_file_for_a_directory(tmp_path):
    target = tmp_path / "exports"
    target.write_text("not a directory")

    with pytest.raises(CommandError, match="is a file"):
        run("--out", str(target))


def test_the_command_refuses_a_share_with_held_out_domains(tmp_path):
    with pytest.raises(CommandError, match="not both"):
        run("--out", str(tmp_path), "--heldout-share", "0.2", "--heldout-domain", "legal")
