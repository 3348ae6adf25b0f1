"""Escalation endpoints (docs/escalations.md, docs/api.md)."""

import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from agency.models import ApiKey, ClientEmail, Deliverable
from escalations.models import Escalation
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


def test_it_shows_one_escalation_and_answers_404_for_an_unknown_one(writer, read_client):
    escalation = writer.post(URL, {"task": TaskFactory(status="processing").pk}, format="json").json()
    shown = read_client.get(f"{URL}/{escalation['id']}")
    assert shown.status_code == 200
    assert (shown.json()["id"], shown.json()["status"]) == (escalation["id"], "open")
    missing = read_client.get(f"{URL}/{escalation['id'] + 1}")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


@pytest.fixture
def deliverable_files(media_root):
    return media_root / "private"


def _resolve_with_file(client, escalation_id: int, resolution: str = "completed_manually", name: str = "report.csv"):
    upload = SimpleUploadedFile(name, b"month,total\njan,10\n", content_type="text/csv")
    body = {"resolution": resolution, "note": "done by hand", "deliverable": upload}
    return client.post(f"{URL}/{escalation_id}/resolve", body, format="multipart")


def test_it_completes_the_task_with_a_deliverable_uploaded_through_the_api(writer, operator_client, deliverable_files):
    task = TaskFactory(status="processing")
    other = TaskFactory(status="processing")  # its escalation must stay as it is
    escalation = writer.post(URL, {"task": task.pk}, format="json").json()
    untouched = writer.post(URL, {"task": other.pk}, format="json").json()

    response = _resolve_with_file(operator_client, escalation["id"])

    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["resolution"]) == ("resolved", "completed_manually")
    task.refresh_from_db()
    assert task.status == "completed"
    deliverable = Deliverable.objects.get(task=task)
    assert (deliverable.name, deliverable.content_type, deliverable.size) == ("report.csv", "text/csv", 19)
    assert deliverable.sha256 == hashlib.sha256(b"month,total\njan,10\n").hexdigest()
    assert (deliverable_files / deliverable.file.name).read_bytes() == b"month,total\njan,10\n"
    assert ClientEmail.objects.get(task=task).to == task.client.email  # the client is e-mailed the work
    assert Escalation.objects.get(pk=untouched["id"]).status == "open"
    assert not Deliverable.objects.filter(task=other).exists()


def test_a_refused_resolution_keeps_neither_the_deliverable_row_nor_its_file(
    writer, operator_client, deliverable_files
):
    escalation = writer.post(URL, {"task": TaskFactory(status="processing").pk}, format="json").json()
    assert operator_client.post(f"{URL}/{escalation['id']}/resolve", {"resolution": "failed"}).status_code == 200

    response = _resolve_with_file(operator_client, escalation["id"])

    assert response.status_code == 409
    assert not Deliverable.objects.exists()
    assert not [p for p in deliverable_files.rglob("*") if p.is_file()]


def test_it_refuses_a_deliverable_with_any_other_resolution(writer, operator_client, deliverable_files):
    escalation = writer.post(URL, {"task": TaskFactory(status="processing").pk}, format="json").json()
    response = _resolve_with_file(operator_client, escalation["id"], resolution="failed")
    assert response.status_code == 400
    assert "deliverable" in response.json()["errors"]
    assert Escalation.objects.get(pk=escalation["id"]).status == "open"
    assert not [p for p in deliverable_files.rglob("*") if p.is_file()]
