"""The operator back office for tasks, payments and keys (docs/tasks.md)."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agency.models import DeliveryLink, Domain, IdempotencyRecord, StripeEvent, TaskEvent
from agency.services.api_keys import api_key_create
from agency.services.delivery import delivery_link_issue
from tests.agency.factories import ClientFactory, TaskFactory

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "/admin/agency/task/",
    "/admin/agency/client/",
    "/admin/agency/domain/",
    "/admin/agency/stripeevent/",
    "/admin/agency/deliverylink/",
    "/admin/agency/apikey/",
    "/admin/agency/idempotencyrecord/",
]


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


@pytest.mark.parametrize("url", CHANGELISTS)
def test_it_renders_each_changelist_with_a_query_count_that_does_not_grow_with_rows(admin_client, url):
    TaskFactory.create_batch(3)
    few = _queries(admin_client, url)
    _grow(40)
    assert _queries(admin_client, url) == few


def _grow(n: int) -> None:
    """Rows for every changelist above, so a per-row query would show: each task of a client and a
    domain of its own."""
    for i in range(n):
        domain = Domain.objects.create(slug=f"domain-{i}", name="d", base_rate_cents=100)
        task = TaskFactory(status="completed", domain=domain)
        StripeEvent.objects.create(event_id=f"evt_{task.pk}", type="t", task=task, outcome="ignored", payload={})
        DeliveryLink.objects.create(task=task, token_hash=f"{task.pk:064x}", expires_at=task.created_at)
        IdempotencyRecord.objects.create(principal=f"key:{task.pk}", key="k", fingerprint="f")
        api_key_create(name=f"key {task.pk}", scope="read", created_by=get_user_model().objects.first())


def test_it_marks_pending_tasks_paid_through_the_state_machine(admin_client):
    pending, started = TaskFactory(status="pending"), TaskFactory(status="processing")
    response = admin_client.post(
        "/admin/agency/task/",
        {"action": "mark_paid", "_selected_action": [pending.pk, started.pk]},
        follow=True,
    )
    assert response.status_code == 200
    pending.refresh_from_db()
    started.refresh_from_db()
    assert (pending.status, started.status) == ("paid", "processing")
    event = TaskEvent.objects.get(task=pending)
    assert event.actor.startswith("admin:user:") and event.to_status == "paid"
    assert b"Refused" in response.content  # the processing task was refused, and said so


def test_it_cancels_through_the_state_machine(admin_client):
    task = TaskFactory(status="paid")
    admin_client.post("/admin/agency/task/", {"action": "cancel", "_selected_action": [task.pk]})
    task.refresh_from_db()
    assert task.status == "cancelled"


def test_it_flags_only_the_paid_tasks_it_cancels_for_a_refund(admin_client):
    paid, pending = TaskFactory(status="paid"), TaskFactory(status="pending")
    paid_earlier_note = TaskFactory(status="paid", needs_operator=True, operator_note="Check the input file.")
    selected = [t.pk for t in (paid, pending, paid_earlier_note)]
    admin_client.post("/admin/agency/task/", {"action": "cancel", "_selected_action": selected})
    for task in (paid, pending, paid_earlier_note):
        task.refresh_from_db()
        assert task.status == "cancelled"
    assert (paid.needs_operator, paid.operator_note) == (True, "Refund the client: cancelled after payment.")
    assert (pending.needs_operator, pending.operator_note) == (False, "")
    assert paid_earlier_note.operator_note == "Check the input file.\nRefund the client: cancelled after payment."


def test_it_revokes_the_selected_delivery_links_only(admin_client):
    first, second = (delivery_link_issue(task=TaskFactory(status="completed")) for _ in range(2))
    response = admin_client.post(
        "/admin/agency/deliverylink/", {"action": "revoke", "_selected_action": [first.link.pk]}, follow=True
    )
    assert b"Revoked 1 delivery link(s)." in response.content
    assert DeliveryLink.objects.get(pk=first.link.pk).revoked_at is not None
    assert DeliveryLink.objects.get(pk=second.link.pk).revoked_at is None
    again = admin_client.post(
        "/admin/agency/deliverylink/", {"action": "revoke", "_selected_action": [first.link.pk]}, follow=True
    )
    assert b"already revoked" in again.content


def test_it_does_not_let_an_operator_edit_a_status_by_hand(admin_client):
    task = TaskFactory(status="pending")
    page = admin_client.get(f"/admin/agency/task/{task.pk}/change/").content.decode()
    assert 'name="status"' not in page
    admin_client.post(
        f"/admin/agency/task/{task.pk}/change/",
        {"title": "Renamed", "description": "", "operator_note": "", "status": "completed",
         "events-TOTAL_FORMS": 0, "events-INITIAL_FORMS": 0, "deliverables-TOTAL_FORMS": 0,
         "deliverables-INITIAL_FORMS": 0, "work_attempts-TOTAL_FORMS": 0, "work_attempts-INITIAL_FORMS": 0},
    )  # fmt: skip
    task.refresh_from_db()
    assert task.title == "Renamed" and task.status == "pending"


def test_it_keeps_a_clients_address_out_of_the_operators_hands(admin_client):
    client = ClientFactory(email="ann@example.com")
    assert admin_client.get("/admin/agency/client/add/").status_code == 403
    page = admin_client.get(f"/admin/agency/client/{client.pk}/change/").content.decode()
    assert 'name="email"' not in page
    admin_client.post(
        f"/admin/agency/client/{client.pk}/change/", {"email": "bob@example.com", "name": "Ann", "preferences": "{}"}
    )
    client.refresh_from_db()
    assert (client.name, client.email, client.email_normalized) == ("Ann", "ann@example.com", "ann@example.com")


def _task_with_files():
    from django.core.files.base import ContentFile

    from agency.models import Deliverable

    task = TaskFactory(status="completed", input_name="q3 ledger.csv", input_content_type="text/csv", input_size=8)
    task.input_file.save("q3.csv", ContentFile(b"a,b\n1,2\n"), save=True)
    deliverable = Deliverable(task=task, name="report.html", content_type="text/html", size=22, sha256="0" * 64)
    deliverable.file.save("report.html", ContentFile(b"<script>x()</script>ok"), save=True)
    return task, deliverable


def test_staff_download_a_tasks_input_and_deliverables_from_its_page(admin_client):
    task, deliverable = _task_with_files()
    page = admin_client.get(f"/admin/agency/task/{task.pk}/change/").content.decode()
    assert f'<a href="/admin/agency/task/{task.pk}/input/">q3 ledger.csv</a> (8 bytes)' in page
    assert f'<a href="/admin/agency/task/{task.pk}/deliverables/{deliverable.pk}/">report.html</a>' in page

    response = admin_client.get(f"/admin/agency/task/{task.pk}/input/")
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"a,b\n1,2\n"
    assert response["Content-Disposition"].startswith("attachment;") and response["Content-Type"] == "text/csv"
    response = admin_client.get(f"/admin/agency/task/{task.pk}/deliverables/{deliverable.pk}/")
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in response["Content-Security-Policy"]  # its script never runs on our origin


def test_the_task_downloads_refuse_whoever_may_not_view_tasks(client, admin_client):
    task, deliverable = _task_with_files()
    urls = [f"/admin/agency/task/{task.pk}/input/", f"/admin/agency/task/{task.pk}/deliverables/{deliverable.pk}/"]
    for url in urls:
        assert client.get(url).status_code == 302  # to the login page
    clerk = get_user_model().objects.create_user("clerk", password="x", is_staff=True)
    client.force_login(clerk)
    for url in urls:
        assert client.get(url).status_code == 403
    other = TaskFactory()
    assert admin_client.get(f"/admin/agency/task/{other.pk}/deliverables/{deliverable.pk}/").status_code == 404
    assert admin_client.get(f"/admin/agency/task/{other.pk}/input/").status_code == 404
