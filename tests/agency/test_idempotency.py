"""`Idempotency-Key` on creating POSTs (docs/api.md), through `POST /api/v1/cycles`."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agency.api.errors import Conflict
from agency.api.idempotency import idempotency_claim, idempotency_release
from agency.models import ApiKey, IdempotencyRecord
from tests.concurrency import run_at_once
from tests.conftest import client_with_key

URL = "/api/v1/cycles"


@pytest.mark.django_db
def test_it_replays_the_first_answer_for_the_same_key_and_body(operator_client):
    first = operator_client.post(URL, {}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    second = operator_client.post(URL, {}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert IdempotencyRecord.objects.count() == 1


@pytest.mark.django_db
def test_it_creates_anew_without_a_key(operator_client):
    first, second = operator_client.post(URL), operator_client.post(URL)
    assert first.json()["id"] != second.json()["id"]
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
def test_it_refuses_the_same_key_with_a_different_body(operator_client):
    assert operator_client.post(URL, {}, format="json", HTTP_IDEMPOTENCY_KEY="k-2").status_code == 202
    response = operator_client.post(URL, {"other": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_mismatch"


@pytest.mark.django_db
def test_it_keeps_keys_of_different_callers_apart(issue_key):
    a = client_with_key(issue_key(ApiKey.Scope.OPERATOR, name="a"))
    b = client_with_key(issue_key(ApiKey.Scope.OPERATOR, name="b"))
    first = a.post(URL, HTTP_IDEMPOTENCY_KEY="shared")
    second = b.post(URL, HTTP_IDEMPOTENCY_KEY="shared")
    assert first.json()["id"] != second.json()["id"]


@pytest.mark.django_db
def test_it_keeps_keys_that_differ_only_in_case_apart(operator_client):
    first = operator_client.post(URL, HTTP_IDEMPOTENCY_KEY="Order-7")
    second = operator_client.post(URL, HTTP_IDEMPOTENCY_KEY="order-7")
    assert first.json()["id"] != second.json()["id"]
    assert "Idempotent-Replayed" not in second.headers
    assert IdempotencyRecord.objects.count() == 2


@pytest.mark.django_db
def test_it_refuses_an_overlong_key(operator_client):
    response = operator_client.post(URL, HTTP_IDEMPOTENCY_KEY="x" * 256)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["errors"]


@pytest.mark.django_db
def test_it_answers_409_while_the_first_request_is_in_flight():
    IdempotencyRecord.objects.create(principal="key:1", key="busy", fingerprint="f")
    with pytest.raises(Exception) as caught:
        idempotency_claim(principal="key:1", key="busy", fingerprint="f")
    assert caught.value.get_codes() == "idempotency_in_progress"


@pytest.mark.django_db
def test_it_takes_over_a_claim_abandoned_by_a_crashed_request(settings):
    record = IdempotencyRecord.objects.create(principal="key:1", key="orphan", fingerprint="f")
    stale = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS + 5)
    IdempotencyRecord.objects.filter(pk=record.pk).update(created_at=stale)
    claimed, replay = idempotency_claim(principal="key:1", key="orphan", fingerprint="f")
    assert (claimed.pk, replay) == (record.pk, False)


@pytest.mark.django_db
def test_it_forgets_answers_past_their_replay_window(operator_client, settings):
    operator_client.post(URL, HTTP_IDEMPOTENCY_KEY="old")
    expired = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS + 5)
    IdempotencyRecord.objects.update(created_at=expired)
    again = operator_client.post(URL, HTTP_IDEMPOTENCY_KEY="old")
    assert again.status_code == 202
    assert "Idempotent-Replayed" not in again.headers


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_it_creates_once_when_the_same_key_arrives_concurrently(issue_key):
    raw = issue_key(ApiKey.Scope.OPERATOR)

    def send(_):
        response = client_with_key(raw).post(URL, HTTP_IDEMPOTENCY_KEY="race")
        return response.status_code, response.json()

    answers = run_at_once(8, send)
    assert len(answers) == 8
    created = {body["id"] for status, body in answers if status == 202}
    assert len(created) == 1  # replays carry the same cycle id
    others = [body["code"] for status, body in answers if status != 202]
    assert all(code == "idempotency_in_progress" for code in others)
    assert IdempotencyRecord.objects.filter(key="race").count() == 1


@pytest.mark.django_db
def test_a_request_whose_claim_was_taken_over_cannot_free_the_new_holders_claim(settings):
    first, _ = idempotency_claim(principal="key:1", key="slow-1", fingerprint="f")
    stale = first.created_at - timedelta(seconds=settings.IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS + 1)
    IdempotencyRecord.objects.filter(pk=first.pk).update(created_at=stale)
    first.created_at = stale  # the slow first holder, as it knows its claim
    second, replay = idempotency_claim(principal="key:1", key="slow-1", fingerprint="f")
    assert (second.pk, replay, second.work_key) == (first.pk, False, first.work_key)  # taken over, same work

    idempotency_release(record=first)  # the slow one fails late

    assert IdempotencyRecord.objects.filter(pk=second.pk, status_code__isnull=True).exists()
    with pytest.raises(Conflict):  # the key is still held: a third caller waits, it does not start anew
        idempotency_claim(principal="key:1", key="slow-1", fingerprint="f")
