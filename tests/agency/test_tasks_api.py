"""Task endpoints (docs/tasks.md, docs/api.md): create, list, detail, cancel, inputs."""

import io
import uuid
import zipfile

import pytest

from agency.models import ApiKey, Task, TaskEvent
from agency.services.tasks import TaskOrder, task_create
from agency.services.uploads import upload_from_text
from tests.agency.factories import ClientFactory, TaskFactory, domain
from tests.conftest import client_with_key

pytestmark = pytest.mark.django_db
URL = "/api/v1/tasks"
ORDER = {
    "domain": "legal",
    "title": "Review an NDA",
    "description": "Two pages.",
    "client_email": "buyer@example.com",
    "payment": "prepaid",
}


@pytest.fixture
def writer(issue_key):
    return client_with_key(issue_key(ApiKey.Scope.WRITE))


def test_it_creates_a_prepaid_task_paid_and_priced(writer):
    response = writer.post(URL, ORDER, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["status"], body["price_cents"], body["is_high_value"]) == ("paid", 26250, True)
    task = Task.objects.get(pk=body["id"])
    assert (task.client.email, task.client.name) == ("buyer@example.com", "")
    events = list(TaskEvent.objects.filter(task=task).order_by("id").values_list("from_status", "to_status", "reason"))
    assert events == [("", "pending", "created"), ("pending", "paid", "prepaid by a trusted integration")]
    assert task.paid_at is not None


def test_it_charges_the_discount_it_quoted(writer):
    client = ClientFactory(email="loyal@example.com")
    TaskFactory(client=client, status="completed")
    quoted = writer.get("/api/v1/quote", {"domain": "legal", "client_email": "LOYAL@example.com"}).json()
    created = writer.post(URL, {**ORDER, "client_email": "LOYAL@example.com"}, format="json").json()
    assert created["price_cents"] == quoted["price_cents"] == 24937  # 26 250 - 5 % (1 312.5 → 1 313)
    assert created["discount_cents"] == quoted["discount_cents"] == 1313
    assert Task.objects.get(pk=created["id"]).client == client  # the same client, whatever the case


def test_it_needs_the_write_scope_for_prepaid(read_client):
    response = read_client.post(URL, ORDER, format="json")
    assert response.status_code == 403
    assert not Task.objects.exists()


def test_it_refuses_anonymous_creation(api):
    assert api.post(URL, ORDER, format="json").status_code == 401


def test_it_answers_503_for_card_payments_while_stripe_is_not_configured(writer):
    response = writer.post(URL, {**ORDER, "payment": "stripe"}, format="json")
    assert response.status_code == 503
    assert not Task.objects.exists()


def test_it_reports_every_invalid_field(writer):
    response = writer.post(URL, {"domain": "legal", "payment": "cash"}, format="json")
    assert response.status_code == 400
    assert {"title", "client_email", "payment"} <= set(response.json()["errors"])


def test_it_stores_csv_text_as_the_input_file(writer):
    csv = "month,revenue\njan,100\nfeb,120\n"
    body = writer.post(URL, {**ORDER, "input_csv": csv}, format="json").json()
    task = Task.objects.get(pk=body["id"])
    assert (task.input_name, task.input_content_type, task.input_size) == ("input.csv", "text/csv", len(csv))
    assert task.input_file.read().decode() == csv
    assert len(task.input_sha256) == 64


def _multipart(writer, name: str, content: bytes, **extra):
    upload = io.BytesIO(content)
    upload.name = name
    return writer.post(URL, {**ORDER, **extra, "input_file": upload}, format="multipart")


def _xlsx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "content_type"),
    [
        ("ledger.csv", b"a,b\n1,2\n", "text/csv"),
        ("notes.txt", "r\u00e9sum\u00e9\n".encode(), "text/plain"),
        ("data.json", b'{"rows": [1, 2]}', "application/json"),
        ("contract.pdf", b"%PDF-1.7\n...", "application/pdf"),
        ("book.xlsx", _xlsx(), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ],
)
def test_it_accepts_each_supported_input(writer, name, content, content_type):
    response = _multipart(writer, name, content)
    assert response.status_code == 201, response.json()
    assert Task.objects.get().input_content_type == content_type


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("contract.pdf", b"a,b\n1,2\n"),  # not a PDF inside
        ("book.xlsx", b"PK\x03\x04 but not a zip"),
        ("ledger.csv", b"\x00\x01binary"),
        ("data.json", b"{not json"),
        ("tool.exe", b"MZ..."),
        ("noextension", b"a,b"),
    ],
)
def test_it_refuses_bad_inputs_and_keeps_nothing(writer, name, content, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path
    response = _multipart(writer, name, content)
    assert response.status_code == 400
    assert "input_file" in response.json()["errors"]
    assert not Task.objects.exists()
    assert not any(tmp_path.rglob("*.*"))  # no file left behind


def test_it_answers_413_for_an_oversized_input(writer, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.TASK_INPUT_MAX_BYTES = 1024
    response = _multipart(writer, "big.csv", b"a,b\n" * 1000)
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert not Task.objects.exists()


def test_it_strips_directories_from_an_uploaded_name(writer, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    response = _multipart(writer, "../../../etc/passwd.csv", b"a,b\n")
    assert response.status_code == 201
    task = Task.objects.get()
    assert task.input_name == "passwd.csv"
    assert ".." not in task.input_file.name
    assert (tmp_path / task.input_file.name).resolve().is_relative_to(tmp_path.resolve())


def test_it_lists_with_filters(read_client):
    mine = ClientFactory(email="mine@example.com")
    TaskFactory(client=mine, status="paid")
    TaskFactory(client=mine, status="completed")
    TaskFactory(status="paid", domain=domain("accounting"))
    body = read_client.get(URL, {"status": "paid", "client": "MINE@example.com"}).json()
    assert body["count"] == 1
    assert body["results"][0]["client_email"] == "mine@example.com"
    assert read_client.get(URL, {"domain": "legal"}).json()["count"] == 2
    assert read_client.get(URL, {"created_after": "2000-01-01T00:00:00Z"}).json()["count"] == 3
    assert read_client.get(URL, {"created_before": "2000-01-01T00:00:00Z"}).json()["count"] == 0
    assert read_client.get(URL, {"status": "bogus"}).status_code == 400


def test_it_shows_a_task_without_secrets(read_client):
    task = TaskFactory(stripe_session_id="cs_test_secretish")
    body = read_client.get(f"{URL}/{task.pk}").json()
    assert body["id"] == task.pk and body["status"] == "pending" and body["price_cents"] == task.price_cents
    assert "cs_test_secretish" not in str(body)
    assert read_client.get(f"{URL}/999999").status_code == 404


def test_it_cancels_a_task_that_has_not_started(writer):
    task = TaskFactory(status="paid")
    response = writer.post(f"{URL}/{task.pk}/cancel", {"reason": "client changed their mind"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert TaskEvent.objects.get(task=task).reason == "client changed their mind"


def test_it_flags_a_paid_task_for_a_refund_when_it_is_cancelled(writer):
    paid, pending = TaskFactory(status="paid"), TaskFactory(status="pending")
    answers = {t.pk: writer.post(f"{URL}/{t.pk}/cancel", format="json") for t in (paid, pending)}
    assert [a.status_code for a in answers.values()] == [200, 200]
    assert answers[paid.pk].json()["needs_operator"] is True
    assert answers[pending.pk].json()["needs_operator"] is False
    paid.refresh_from_db()
    pending.refresh_from_db()
    assert (paid.status, paid.needs_operator) == ("cancelled", True)
    assert paid.operator_note == "Refund the client: cancelled after payment."
    assert (pending.status, pending.needs_operator, pending.operator_note) == ("cancelled", False, "")


def test_it_refuses_to_cancel_a_completed_task_with_409(writer):
    task = TaskFactory(status="completed")
    response = writer.post(f"{URL}/{task.pk}/cancel")
    assert response.status_code == 409
    assert response.json()["id"] == task.pk
    assert response.json()["code"] == "invalid_transition"


def test_it_creates_once_for_a_repeated_idempotency_key(writer):
    first = writer.post(URL, ORDER, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    second = writer.post(URL, ORDER, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    assert first.json()["id"] == second.json()["id"]
    assert Task.objects.count() == 1


def test_it_keeps_one_client_per_email_whatever_the_case():
    from django.db import IntegrityError, transaction

    from agency.models import Client

    Client.objects.create(email="Same@Example.com", email_normalized=Client.normalize_email("Same@Example.com"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Client.objects.create(email="same@example.COM", email_normalized=Client.normalize_email("same@example.COM"))


def test_it_refuses_a_client_without_its_normalized_address():
    from django.db import IntegrityError, transaction

    from agency.models import Client

    with pytest.raises(IntegrityError), transaction.atomic():
        Client.objects.create(email="someone@example.com")


@pytest.mark.parametrize(
    ("raw", "kind", "expected"),
    [
        ("../../etc/passwd.csv", "csv", "passwd.csv"),
        ("..\\..\\windows\\evil.csv", "csv", "evil.csv"),
        (".csv", "csv", "csv.csv"),  # a hidden-file name loses its dot
        ("..", "csv", "input.csv"),
        ("report; rm -rf.pdf", "pdf", "report_rm_-rf.pdf"),
    ],
)
def test_it_turns_any_uploaded_name_into_a_plain_file_name(raw, kind, expected):
    from agency.services.uploads import safe_filename

    assert safe_filename(raw, kind) == expected


@pytest.mark.parametrize("status", ["pending", "paid", "planning", "processing", "reviewing", "completed", "failed",
                                    "cancelled", "escalated"])  # fmt: skip
def test_it_cancels_only_tasks_that_have_not_started_and_answers_409_otherwise(writer, status):
    task = TaskFactory(status=status)
    response = writer.post(f"{URL}/{task.pk}/cancel")
    task.refresh_from_db()
    if status in ("pending", "paid"):
        assert response.status_code == 200 and task.status == "cancelled"
    else:
        assert response.status_code == 409 and task.status == status
        assert not TaskEvent.objects.filter(task=task).exists()


def test_a_creation_that_fails_after_storing_the_input_removes_the_file(writer, refuse_inserts, media_root):
    refuse_inserts("agency_taskevent")  # the task row is written, its creation event is refused
    writer.raise_request_exception = False
    response = _multipart(writer, "ledger.csv", b"a,b\n1,2\n")
    assert response.status_code in (500, 503)  # MariaDB reports the refusal as an OperationalError: 503
    assert not Task.objects.exists()
    assert [p for p in (media_root / "private").rglob("*") if p.is_file()] == []


def test_it_creates_the_task_with_every_field_it_was_sent_and_a_creation_event(writer):
    order = {**ORDER, "description": "Two pages, mutual.", "complexity": "complex", "urgency": "rush",
             "client_name": "Buyer Ltd"}  # fmt: skip
    body = writer.post(URL, order, format="json").json()
    task = Task.objects.select_related("client", "domain").get(pk=body["id"])
    assert (task.domain.slug, task.title, task.description, task.complexity, task.urgency) == (
        "legal", "Review an NDA", "Two pages, mutual.", "complex", "rush",
    )  # fmt: skip
    assert (task.client.email, task.client.name, task.currency) == ("buyer@example.com", "Buyer Ltd", "USD")
    first = TaskEvent.objects.filter(task=task).order_by("id").first()
    assert (first.from_status, first.to_status, first.reason) == ("", "pending", "created")
    assert first.actor.startswith("api:key:")


def test_a_resumed_creation_keeps_the_first_input_and_removes_the_second(media_root):
    key = uuid.uuid4()

    def create(csv: str):
        order = TaskOrder(domain=domain(), title="T", description="D", complexity="medium", urgency="standard",
                          client_email="buyer@example.com", upload=upload_from_text(text=csv))  # fmt: skip
        return task_create(order=order, payment="prepaid", actor="test", work_key=key)[0]

    first, again = create("a,b\n1,2\n"), create("a,b\n3,4\n")
    assert again.pk == first.pk and Task.objects.count() == 1
    assert again.input_file.read() == b"a,b\n1,2\n"
    stored = [p for p in (media_root / "private").rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in stored] == [b"a,b\n1,2\n"]


def test_it_refuses_an_unknown_payment_mode_before_writing_anything():
    order = TaskOrder(domain=domain(), title="T", description="D", complexity="medium", urgency="standard",
                      client_email="buyer@example.com")  # fmt: skip
    with pytest.raises(ValueError) as refused:
        task_create(order=order, payment="barter", actor="test")
    assert str(refused.value) == "Unknown payment mode 'barter'"
    assert not Task.objects.exists()
