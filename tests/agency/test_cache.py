"""A shared cache outage (agency/cache.py): the uses that fail open go on, the rest answer 503."""

import time

import pytest
from django.test import Client

from agency.services.delivery import deliverable_add, delivery_link_issue
from agency.services.tasks import task_transition
from tests.agency.factories import TaskFactory

pytestmark = pytest.mark.django_db

# A hung cache costs one socket timeout per call (CACHE_TIMEOUT_SECONDS, 0.5 s); a refused one, nothing.
QUICK = 2.0


def _timed(call):
    started = time.perf_counter()
    response = call()
    return response, time.perf_counter() - started


def test_it_serves_authenticated_api_calls_without_throttling_while_the_cache_is_down(
    read_client, cache_down, log_lines
):
    response, elapsed = _timed(lambda: read_client.get("/api/v1/tasks"))
    assert response.status_code == 200, response.content
    assert elapsed < QUICK
    [warning] = [line for line in log_lines() if line.get("event") == "cache_unavailable"]
    assert (warning["use"], warning["fails"], warning["level"]) == ("api_throttle", "open", "warning")
    assert warning["error"] in ("ConnectionError", "TimeoutError")
    assert "127.0.0.1" not in str(warning)


def test_it_throttles_again_once_the_cache_is_back(operator_client):
    # The counterpart of the test above: with the cache up, the budget is enforced.
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    old = SimpleRateThrottle.THROTTLE_RATES
    SimpleRateThrottle.THROTTLE_RATES = {**api_settings.DEFAULT_THROTTLE_RATES, "principal": "2/min"}
    try:
        codes = [operator_client.get("/api/v1/tasks").status_code for _ in range(3)]
    finally:
        SimpleRateThrottle.THROTTLE_RATES = old
    assert codes == [200, 200, 429]


@pytest.mark.urls("tests.agency.urls")
def test_it_answers_503_with_retry_after_where_the_cache_is_needed(read_client, cache_down):
    response, elapsed = _timed(lambda: read_client.get("/api/test/cache"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    body = response.json()
    assert (body["code"], body["detail"]) == ("unavailable", "The service is temporarily unavailable.")
    assert body["trace_id"]
    assert elapsed < QUICK


@pytest.mark.urls("tests.agency.urls")
def test_it_reads_the_cache_through_the_same_endpoint_when_it_is_up(read_client):
    from django.core.cache import cache

    cache.set("tests:value", "here")
    assert read_client.get("/api/test/cache").json() == {"value": "here"}


def test_it_keeps_delivery_links_working_while_the_cache_is_down(cache_down):
    task, other = TaskFactory(status="reviewing"), TaskFactory(status="reviewing")
    for t in (task, other):
        deliverable_add(task=t, name="report.csv", content=f"task,{t.pk}\n".encode(), content_type="text/csv")
        task_transition(task=t, to="completed", actor="test")
    issued = delivery_link_issue(task=task)
    client = Client(REMOTE_ADDR="203.0.113.9")
    page, elapsed = _timed(lambda: client.get(issued.path))
    assert page.status_code == 200
    assert elapsed < QUICK
    download = client.get(f"{issued.path}{task.deliverables.get().pk}")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == f"task,{task.pk}\n".encode()
    # A wrong token is still refused (uncounted), and a link opens only its own task's files.
    assert client.get(f"/deliver/{task.pk}/wrong-token/").status_code == 404
    assert client.get(f"{issued.path}{other.deliverables.get().pk}").status_code == 404
