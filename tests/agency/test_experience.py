"""Experience retrieval and the experience record (docs/agents.md)."""

import pytest

from agency.models import Experience
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
