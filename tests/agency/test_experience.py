"""Experience retrieval and the experience record (docs/agents.md)."""

import pytest

from agency.models import Experience, TrainingExample
from agency.services.experience import experience_record, experience_similar, index_terms
from tests.agency.factories import TaskFactory, domain
from tests.agency.retrieval_set import OTHER_DOMAIN, QUERIES, RECORDS

pytestmark = pytest.mark.django_db


def _record(slug: str, title: str, summary: str) -> Experience:
    task = TaskFactory(domain=domain(slug), title=title, description="")
    return experience_record(task=task, summary=summary)


@pytest.fixture
def labelled():
    topics = {}
    for topic, records in RECORDS.items():
        for title, summary in records:
            topics[_record("data_analysis", title, summary).pk] = topic
    for title, summary in OTHER_DOMAIN:
        _record("legal", title, summary)
    return topics


def test_the_two_closest_records_are_the_querys_topic_for_at_least_80_percent_of_the_set(labelled):
    hits = 0
    for title, description, topic in QUERIES:
        found = experience_similar(domain=domain("data_analysis"), text=f"{title}\n{description}", limit=2)
        hits += sum(labelled[record.pk] == topic for record in found)
    precision = hits / (2 * len(QUERIES))
    assert len(QUERIES) >= 20
    assert precision >= 0.8, f"top-2 precision {precision:.2f}"


def test_it_returns_records_of_the_tasks_domain_only(labelled):
    for title, description, _ in QUERIES:
        found = experience_similar(domain=domain("data_analysis"), text=f"{title}\n{description}")
        assert all(record.domain.slug == "data_analysis" for record in found)
    legal = experience_similar(domain=domain("legal"), text="regional sales revenue")
    assert [record.title for record in legal] == ["Sales contract review"]


def test_it_ranks_the_record_sharing_the_rarer_words_first():
    _record("data_analysis", "Monthly revenue report", "Monthly revenue totals per month.")
    rare = _record("data_analysis", "Churn of subscribers", "Monthly churn of subscribers.")
    _record("data_analysis", "Monthly costs", "Monthly costs per month.")
    found = experience_similar(domain=domain("data_analysis"), text="monthly subscriber churn")
    assert found[0] == rare and len(found) == 2


def test_it_returns_nothing_for_a_query_without_shared_words(labelled):
    assert experience_similar(domain=domain("data_analysis"), text="zebra quantum") == []
    assert experience_similar(domain=domain("data_analysis"), text="the and of") == []  # stop words only


def test_it_keeps_one_record_per_task_and_none_without_a_summary():
    task = TaskFactory(domain=domain("data_analysis"), title="Sales", description="By region")
    first = experience_record(task=task, summary="North leads.")
    again = experience_record(task=task, summary="Something else.")
    assert again == first and Experience.objects.get().summary == "North leads."
    assert experience_record(task=TaskFactory(), summary="") is None


def test_index_terms_fold_case_plurals_and_stop_words():
    assert index_terms("The Sales of Regions, per Month; 2026 totals & NPS") == [
        "sale", "region", "month", "2026", "total", "nps"]  # fmt: skip
    assert index_terms("business class") == ["business", "class"]  # no folding of -ss


def _records(*terms: str) -> list[Experience]:
    task = TaskFactory(domain=domain("data_analysis"))
    return [
        Experience.objects.create(task=TaskFactory(domain=task.domain), domain=task.domain, title=t, summary=t, terms=t)
        for t in terms
    ]


def test_it_weighs_rarity_repetition_and_length_as_bm25_does():
    # Five records whose order under BM25 (k1 1.2, b 0.75) changes if the rare-term weight, the
    # saturation of repeated terms or the length normalisation is computed otherwise.
    records = _records(
        "eps alpha alpha",
        "eps alpha alpha beta",
        "eps beta gamma delta delta",
        "delta eps alpha delta alpha delta beta",
        "delta zeta delta gamma zeta eps",
    )
    found = experience_similar(domain=domain("data_analysis"), text="alpha gamma", limit=5)
    assert found == [records[2], records[0], records[4], records[1], records[3]]


def test_equal_scores_go_to_the_newer_record():
    older, newer = _records("sales region", "sales region")
    assert experience_similar(domain=domain("data_analysis"), text="region", limit=2) == [newer, older]


def test_index_terms_keep_two_letter_words_and_fold_four_letter_plurals():
    assert index_terms("a b2 cats bus glass x") == ["b2", "cat", "bus", "glass"]


@pytest.mark.parametrize(
    ("verdict", "rating"),
    [({"score": 1}, 1), ({"score": 5}, 5), ({"score": 0}, None), ({"score": 6}, None), ({"score": "5"}, None),
     ("5", None)],
)  # fmt: skip
def test_a_training_example_keeps_a_review_score_from_1_to_5(verdict, rating):
    examples = _captured(verdict, kinds=("cloud",))
    assert [example.rating for example in examples] == [rating]


def test_only_cloud_answers_become_training_examples_whatever_their_order():
    examples = _captured({"score": 4}, kinds=("local", "cloud", "local", "cloud"))
    assert len(examples) == 2 and all(isinstance(example, TrainingExample) for example in examples)
    assert {example.teacher.provider.kind for example in examples} == {"cloud"}
    assert TrainingExample.objects.count() == 2


def _captured(verdict, *, kinds: tuple[str, ...]) -> list:
    from agency.agents.base import TeacherStep
    from agency.models import AgentProfile, Attempt, ModelCall
    from agency.services.experience import training_capture
    from tests.agency.gateway_setup import deployment_at

    task = TaskFactory(domain=domain("data_analysis"))
    attempt = Attempt.objects.create(task=task, profile=AgentProfile.objects.get(name="baseline"), number=1)
    steps = []
    for n, kind in enumerate(kinds):
        deployment = deployment_at("http://127.0.0.1:9/v1", model=f"m{n}")
        deployment.provider.kind = kind
        deployment.provider.save()
        purpose = ("plan", "work", "review", "evaluate")[n]
        call = ModelCall.objects.create(deployment=deployment, purpose=purpose, task=task, agent_attempt=attempt,
                                        attempt=1, outcome="ok", latency_ms=5)  # fmt: skip
        steps.append(TeacherStep(call, [{"role": "user", "content": f"step {n}"}], f"answer {n}"))
    return training_capture(task=task, attempt=attempt, calls=steps, verdict=verdict)
