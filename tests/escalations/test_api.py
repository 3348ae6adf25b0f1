"""Escalation endpoints (SPEC §7, §9)."""

import pytest

from agency.models import ApiKey
from tests.agency.factories import TaskFactory
from tests.conftest import client_with_key

pytestmark = pytest.mark.django_db
URL = "/api/v1/escalations"


@pytest.fixture
def writer(issue_key):
    return client_with_key(issue_key(ApiKey.Scope.WRITE))


def test_it_raises_an_escalation_once_then_answers_with_the_open_one(writer):
    task = TaskFactory(status="processing")
    first = writer.post(URL, {"task": task.pk, "detail": "client called"}, format="json")
    second = writer.post(URL, {"task": task.pk}, format="json")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["reason"] == "integration"
    task.refresh_from_db()
    assert task.status == "escalated"


def test_it_replays_a_repeated_idempotency_key(writer):
    task = TaskFactory(status="processing")
    first = writer.post(URL, {"task": task.pk}, format="json", HTTP_IDEMPOTENCY_KEY="esc-1")
    again = writer.post(URL, {"task": task.pk}, format="json", HTTP_IDEMPOTENCY_KEY="esc-1")
    assert again.status_code == first.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"


def test_it_lists_and_filters(read_client, writer):
    writer.post(URL, {"task": TaskFactory(status="processing").pk}, format="json")
    assert read_client.get(URL, {"status": "open"}).json()["count"] == 1
    assert read_client.get(URL, {"status": "resolved"}).json()["count"] == 0


def test_it_acknowledges_and_resolves_for_operators_and_refuses_a_second_resolution(writer, operator_client):
    escalation = writer.post(URL, {"task": TaskFactory(status="processing").pk}, format="json").json()
    assert operator_client.post(f"{URL}/{escalation['id']}/acknowledge").json()["status"] == "acknowledged"
    resolved = operator_client.post(f"{URL}/{escalation['id']}/resolve", {"resolution": "retried"}, format="json")
    assert resolved.status_code == 200 and resolved.json()["resolution"] == "retried"
    again = operator_client.post(f"{URL}/{escalation['id']}/resolve", {"resolution": "failed"}, format="json")
    assert again.status_code == 409
    assert again.json()["id"] == escalation["id"]


def test_it_needs_the_operator_scope_to_resolve(writer, read_client, api):
    escalation = writer.post(URL, {"task": TaskFactory(status="processing").pk}, format="json").json()
    body = {"resolution": "dismissed"}
    assert read_client.post(f"{URL}/{escalation['id']}/resolve", body, format="json").status_code == 403
    assert writer.post(f"{URL}/{escalation['id']}/resolve", body, format="json").status_code == 403
    assert api.post(f"{URL}/{escalation['id']}/resolve", body, format="json").status_code == 401


def test_it_refuses_an_unknown_task_or_resolution(writer, operator_client):
    assert writer.post(URL, {"task": 999999}, format="json").status_code == 400
    escalation = writer.post(URL, {"task": TaskFactory(status="processing").pk}, format="json").json()
    response = operator_client.post(f"{URL}/{escalation['id']}/resolve", {"resolution": "shrug"}, format="json")
    assert response.status_code == 400
    assert operator_client.post(f"{URL}/999999/acknowledge").status_code == 404
