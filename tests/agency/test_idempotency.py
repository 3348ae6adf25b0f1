"""`Idempotency-Key` on creating POSTs (docs/api.md), through `POST /api/v1/cycles`."""

import io
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.response import Response

from agency.api.errors import Conflict
from agency.api.idempotency import idempotency_claim, idempotency_complete, idempotency_release
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
    assert response.json()["detail"] == "Idempotency-Key 'k-2' was already used with a different request."


@pytest.mark.django_db
def test_it_keeps_keys_of_different_callers_apart(issue_key):
    a = client_with_key(issue_key(ApiKey.Scope.OPERATOR, name="a"))
    b = client_with_key(issue_key(ApiKey.Scope.OPERATOR, name="b"))
    first = a.post(URL, HTTP_IDEMPOTENCY_KEY="shared")
    second = b.post(URL, HTTP_IDEMPOTENCY_KEY="shared")
    assert first.json()["id"] != second.json()["id"]
    # Each caller's repeat replays its own answer, never the other's.
    assert b.post(URL, HTTP_IDEMPOTENCY_KEY="shared").json()["id"] == second.json()["id"]
    assert a.post(URL, HTTP_IDEMPOTENCY_KEY="shared").json()["id"] == first.json()["id"]


@pytest.mark.django_db
def test_a_repeat_replays_the_answer_of_its_own_key(operator_client):
    answers = {key: operator_client.post(URL, HTTP_IDEMPOTENCY_KEY=key).json()["id"] for key in ("k-a", "k-b")}
    for key in ("k-b", "k-a"):
        again = operator_client.post(URL, HTTP_IDEMPOTENCY_KEY=key)
        assert again.json()["id"] == answers[key] and again.headers["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_it_records_when_the_answer_was_stored(operator_client):
    before = timezone.now()
    operator_client.post(URL, HTTP_IDEMPOTENCY_KEY="k-when")
    record = IdempotencyRecord.objects.get()
    assert before <= record.completed_at <= timezone.now() and record.status_code == 202


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
    with pytest.raises(Conflict) as caught:
        idempotency_claim(principal="key:1", key="busy", fingerprint="f")
    assert caught.value.get_codes() == "idempotency_in_progress"
    assert str(caught.value.detail) == "A request with Idempotency-Key 'busy' is still being processed."


@pytest.mark.django_db
def test_it_takes_over_a_claim_abandoned_by_a_crashed_request(settings):
    record = IdempotencyRecord.objects.create(principal="key:1", key="orphan", fingerprint="f")
    stale = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS + 5)
    IdempotencyRecord.objects.filter(pk=record.pk).update(created_at=stale)
    IdempotencyRecord.objects.create(principal="key:1", key="other-orphan", fingerprint="f")
    IdempotencyRecord.objects.update(created_at=stale)  # both abandoned at the same instant
    claimed, replay = idempotency_claim(principal="key:1", key="orphan", fingerprint="f")
    assert (claimed.pk, replay) == (record.pk, False)
    assert IdempotencyRecord.objects.get(pk=record.pk).created_at == claimed.created_at > stale
    assert IdempotencyRecord.objects.get(key="other-orphan").created_at == stale  # not taken over with it


@pytest.mark.django_db
def test_it_forgets_answers_past_their_replay_window(operator_client, settings):
    operator_client.post(URL, HTTP_IDEMPOTENCY_KEY="old")
    operator_client.post(URL, HTTP_IDEMPOTENCY_KEY="other")
    expired = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS + 5)
    IdempotencyRecord.objects.update(created_at=expired)  # both, at the same instant
    again = operator_client.post(URL, HTTP_IDEMPOTENCY_KEY="old")
    assert again.status_code == 202
    assert "Idempotent-Replayed" not in again.headers
    assert IdempotencyRecord.objects.filter(key="other", created_at=expired).exists()  # not forgotten with it


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


@pytest.fixture
def told(issue_key):
    """A write client for the test endpoints that answer what they are told to, and their call log."""
    from tests.agency.urls import Told

    Told.runs.clear()
    writer = client_with_key(issue_key(ApiKey.Scope.WRITE))
    writer.raise_request_exception = False
    return writer, Told.runs


BOTH = pytest.mark.parametrize("endpoint", ["/api/test/told", "/api/test/told-outside"])


@BOTH
@pytest.mark.django_db
@pytest.mark.urls("tests.agency.urls")
def test_a_server_error_answer_is_passed_on_and_frees_the_key(told, endpoint):
    writer, runs = told
    first = writer.post(endpoint, {"status": 500}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert (first.status_code, first.json()) == (500, {"run": 1})
    again = writer.post(endpoint, {"status": 500}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert again.json() == {"run": 2} and "Idempotent-Replayed" not in again.headers
    assert len(runs) == 2 and not IdempotencyRecord.objects.exists()


@BOTH
@pytest.mark.django_db
@pytest.mark.urls("tests.agency.urls")
def test_a_client_error_answer_is_kept_and_replayed(told, endpoint):
    writer, runs = told
    first = writer.post(endpoint, {"status": 499}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    again = writer.post(endpoint, {"status": 499}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert (first.status_code, again.status_code) == (499, 499)
    assert again.json() == {"run": 1} and again.headers["Idempotent-Replayed"] == "true"
    assert len(runs) == 1


@BOTH
@pytest.mark.django_db
@pytest.mark.urls("tests.agency.urls")
def test_an_exception_frees_the_key(told, endpoint):
    writer, runs = told
    assert writer.post(endpoint, {"raise": True}, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 500
    assert not IdempotencyRecord.objects.exists()
    retried = writer.post(endpoint, {"raise": True}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert retried.status_code == 500 and len(runs) == 2


@pytest.mark.django_db
@pytest.mark.urls("tests.agency.urls")
def test_the_order_of_keys_in_a_json_body_does_not_make_it_another_request(told):
    writer, runs = told
    first = writer.post("/api/test/told", '{"status": 201, "note": "a"}', content_type="application/json",
                        HTTP_IDEMPOTENCY_KEY="k")  # fmt: skip
    again = writer.post("/api/test/told", '{"note": "a", "status": 201}', content_type="application/json",
                        HTTP_IDEMPOTENCY_KEY="k")  # fmt: skip
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true" and len(runs) == 1


def _multipart(writer, content: bytes, name: str = "input.csv"):
    upload = io.BytesIO(content)
    upload.name = name
    return writer.post("/api/test/told", {"note": "a", "file": upload}, format="multipart", HTTP_IDEMPOTENCY_KEY="k")


@pytest.mark.django_db
@pytest.mark.urls("tests.agency.urls")
def test_a_multipart_body_is_the_same_request_only_with_the_same_file(told):
    writer, runs = told
    first = _multipart(writer, b"a,b\n1,2\n")
    same = _multipart(writer, b"a,b\n1,2\n")
    assert (first.status_code, same.status_code) == (201, 201)
    assert same.headers["Idempotent-Replayed"] == "true" and len(runs) == 1
    for other in (_multipart(writer, b"a,b\n1,3\n"), _multipart(writer, b"a,b\n1,2\n", name="other.csv")):
        assert (other.status_code, other.json()["code"]) == (409, "idempotency_mismatch")
    assert len(runs) == 1
    assert runs[0]["file"] == b"a,b\n1,2\n"  # fingerprinting read the file and rewound it


@pytest.mark.django_db
@pytest.mark.urls("tests.agency.urls")
def test_it_accepts_the_longest_key_and_trims_blanks(told):
    writer, runs = told
    longest = "k" * 255
    first = writer.post("/api/test/told", {}, format="json", HTTP_IDEMPOTENCY_KEY=longest)
    again = writer.post("/api/test/told", {}, format="json", HTTP_IDEMPOTENCY_KEY=f"  {longest} ")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true" and len(runs) == 1


@pytest.mark.django_db
def test_storing_an_answer_touches_only_its_own_unanswered_claim():
    first, _ = idempotency_claim(principal="key:1", key="one", fingerprint="f")
    second, _ = idempotency_claim(principal="key:1", key="two", fingerprint="f")
    IdempotencyRecord.objects.update(created_at=first.created_at)  # claimed at the same instant
    second.created_at = first.created_at
    assert idempotency_complete(record=first, response=Response({"id": 1}, status=201))
    assert IdempotencyRecord.objects.filter(pk=second.pk, status_code__isnull=True).exists()
    assert not idempotency_complete(record=first, response=Response({"id": 2}, status=201))  # answered already
    assert IdempotencyRecord.objects.get(pk=first.pk).response_body == {"id": 1}


@pytest.mark.django_db
def test_a_request_whose_claim_was_taken_over_cannot_store_its_answer(settings):
    first, _ = idempotency_claim(principal="key:1", key="slow-2", fingerprint="f")
    stale = first.created_at - timedelta(seconds=settings.IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS + 1)
    IdempotencyRecord.objects.filter(pk=first.pk).update(created_at=stale)
    first.created_at = stale
    second, _ = idempotency_claim(principal="key:1", key="slow-2", fingerprint="f")
    assert not idempotency_complete(record=first, response=Response({"late": True}, status=201))
    assert idempotency_complete(record=second, response=Response({"id": 3}, status=201))
    assert IdempotencyRecord.objects.get(pk=second.pk).response_body == {"id": 3}


@pytest.mark.django_db
def test_freeing_a_key_frees_only_its_own_unanswered_claim():
    first, _ = idempotency_claim(principal="key:1", key="one", fingerprint="f")
    second, _ = idempotency_claim(principal="key:1", key="two", fingerprint="f")
    IdempotencyRecord.objects.update(created_at=first.created_at)  # claimed at the same instant
    idempotency_release(record=first)
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["two"]
    second.created_at = first.created_at
    assert idempotency_complete(record=second, response=Response({"id": 2}, status=201))
    idempotency_release(record=second)  # a late release after the answer was stored
    assert IdempotencyRecord.objects.get(pk=second.pk).response_body == {"id": 2}
