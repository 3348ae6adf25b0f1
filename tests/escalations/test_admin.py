"""The operator inbox in the admin (docs/escalations.md): columns, actions, the resolve page and the outbox."""

import hashlib
import html

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agency.models import Deliverable, Task
from escalations.admin import EscalationAdmin
from escalations.models import Escalation, EscalationEvent, Notification, NotificationChannel
from escalations.services import escalation_assign, escalation_open, escalation_resolve
from tests.agency.factories import TaskFactory
from tests.escalations.factories import ChannelFactory

pytestmark = pytest.mark.django_db
INBOX = "/admin/escalations/escalation/"
OUTBOX = "/admin/escalations/notification/"


@pytest.fixture
def deliverable_files(media_root):
    """Where deliverables are stored in this test (conftest's `media_root` points the file field there)."""
    return media_root / "private"


def _escalation(**task_fields) -> Escalation:
    task = TaskFactory(status="processing", **task_fields)
    return escalation_open(task=task, reason="attempts_exhausted", actor="pipeline")[0]


def _page_queries(client, url: str = INBOX) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def _act(client, action: str, *escalations: Escalation):
    return client.post(INBOX, {"action": action, "_selected_action": [e.pk for e in escalations]}, follow=True)


def _resolve_page(escalation: Escalation) -> str:
    return f"{INBOX}{escalation.pk}/resolve/"


def test_it_lists_attempts_and_the_shortened_last_error(admin_client):
    error = "upstream model timed out " * 10
    _escalation(attempts=3, last_error=error)
    page = admin_client.get(INBOX).content.decode()
    assert "column-attempts" in page and "column-error" in page
    assert '<td class="field-attempts">3</td>' in page
    assert error[:60] in page and error.strip() not in page


def test_it_renders_the_inbox_with_a_query_count_that_does_not_grow_with_rows(admin_client, admin_user):
    def grow(n: int) -> None:
        for _ in range(n):
            escalation_assign(escalation=_escalation(attempts=2, last_error="boom"), assignee=admin_user, actor="t")

    grow(2)
    few = _page_queries(admin_client)
    grow(18)
    assert Escalation.objects.count() == 20
    assert _page_queries(admin_client) == few


@pytest.mark.parametrize("url", [OUTBOX, "/admin/escalations/notificationchannel/"])
def test_it_renders_the_outbox_and_the_channels_with_a_query_count_that_does_not_grow_with_rows(admin_client, url):
    def grow(n: int) -> None:
        for _ in range(n):
            ChannelFactory(target="http://127.0.0.1:9/")
            _escalation()

    grow(2)
    few = _page_queries(admin_client, url)
    grow(20)
    assert Notification.objects.count() > 40
    assert _page_queries(admin_client, url) == few


def test_it_acknowledges_the_open_escalations_and_warns_about_the_rest(admin_client):
    open_one, resolved = _escalation(), _escalation()
    escalation_resolve(escalation=resolved, resolution="dismissed", actor="op")
    page = _act(admin_client, "acknowledge", open_one, resolved).content.decode()
    open_one.refresh_from_db()
    assert open_one.status == "acknowledged"
    assert "1 escalation(s) acknowledged." in page
    assert f"#{resolved.pk}: Only an open escalation can be acknowledged." in page


def test_it_assigns_escalations_to_the_operator_who_asks(admin_client, admin_user):
    escalation = _escalation()
    _act(admin_client, "assign_to_me", escalation)
    escalation.refresh_from_db()
    assert escalation.assignee == admin_user
    assert EscalationEvent.objects.get(escalation=escalation, kind="assigned").actor == f"admin:user:{admin_user.pk}"


@pytest.mark.parametrize(
    ("action", "resolution", "task_status"),
    [
        ("resolve_retried", "retried", "processing"),
        ("resolve_failed", "failed", "failed"),
        ("resolve_refunded", "refunded", "failed"),
        ("dismiss", "dismissed", "escalated"),
    ],
)
def test_it_resolves_through_the_service_from_each_action(admin_client, admin_user, action, resolution, task_status):
    escalation = _escalation()
    page = _act(admin_client, action, escalation).content.decode()
    escalation.refresh_from_db()
    task = Task.objects.get(pk=escalation.task_id)
    assert (escalation.status, escalation.resolution, task.status) == ("resolved", resolution, task_status)
    assert EscalationEvent.objects.get(escalation=escalation, kind="resolved").actor == f"admin:user:{admin_user.pk}"
    assert f"1 escalation(s) resolved ({resolution})." in page


def test_it_warns_per_row_and_resolves_the_others_when_one_is_already_resolved(admin_client):
    done, waiting = _escalation(), _escalation()
    escalation_resolve(escalation=done, resolution="dismissed", actor="op")
    page = _act(admin_client, "resolve_failed", done, waiting).content.decode()
    done.refresh_from_db()
    waiting.refresh_from_db()
    assert (done.resolution, waiting.resolution) == ("dismissed", "failed")
    assert f"#{done.pk}: This escalation is already resolved." in page
    assert "1 escalation(s) resolved (failed)." in page


def test_it_links_the_change_page_to_the_resolve_page_and_shows_the_notifications(admin_client):
    ChannelFactory(name="ops mail", kind="email", target="ops@example.com")
    escalation = _escalation()
    page = admin_client.get(f"{INBOX}{escalation.pk}/change/").content.decode()
    assert f'href="{_resolve_page(escalation)}"' in page
    assert "ops mail (email, primary)" in page  # the outbox row's channel, in the inline


def test_it_completes_the_task_with_an_uploaded_deliverable(admin_client, deliverable_files):
    escalation = _escalation()
    upload = SimpleUploadedFile("report.csv", b"month,total\njan,10\n", content_type="text/csv")
    response = admin_client.post(
        _resolve_page(escalation), {"resolution": "completed_manually", "note": "done by hand", "deliverable": upload}
    )
    assert response.status_code == 302 and response.url == f"{INBOX}{escalation.pk}/change/"
    escalation.refresh_from_db()
    assert (escalation.status, escalation.resolution) == ("resolved", "completed_manually")
    assert Task.objects.get(pk=escalation.task_id).status == "completed"
    deliverable = Deliverable.objects.get(task_id=escalation.task_id)
    assert (deliverable.name, deliverable.content_type) == ("report.csv", "text/csv")
    assert deliverable.sha256 == hashlib.sha256(b"month,total\njan,10\n").hexdigest()
    assert (deliverable_files / deliverable.file.name).read_bytes() == b"month,total\njan,10\n"


def test_it_shows_the_refusal_and_changes_nothing_when_completing_without_a_file(admin_client):
    escalation = _escalation()
    response = admin_client.post(_resolve_page(escalation), {"resolution": "completed_manually", "note": ""})
    assert response.status_code == 200
    assert "Upload a deliverable before completing the task by hand." in response.content.decode()
    escalation.refresh_from_db()
    assert (escalation.status, escalation.resolution) == ("open", "")
    assert Task.objects.get(pk=escalation.task_id).status == "escalated"
    assert not EscalationEvent.objects.filter(escalation=escalation, kind="resolved").exists()


def test_it_shows_an_error_and_keeps_no_file_when_the_escalation_is_already_resolved(admin_client, deliverable_files):
    escalation = _escalation()
    escalation_resolve(escalation=escalation, resolution="dismissed", actor="op")
    upload = SimpleUploadedFile("late.csv", b"a\n", content_type="text/csv")
    response = admin_client.post(
        _resolve_page(escalation), {"resolution": "completed_manually", "note": "", "deliverable": upload}
    )
    assert response.status_code == 200
    assert "This escalation is already resolved." in response.content.decode()
    escalation.refresh_from_db()
    assert escalation.resolution == "dismissed"
    assert not Deliverable.objects.exists()
    assert not [p for p in deliverable_files.rglob("*") if p.is_file()]


def test_it_refuses_a_deliverable_with_another_resolution(admin_client):
    escalation = _escalation()
    upload = SimpleUploadedFile("report.csv", b"a\n", content_type="text/csv")
    response = admin_client.post(_resolve_page(escalation), {"resolution": "failed", "deliverable": upload})
    assert response.status_code == 200
    assert "A deliverable goes with" in response.content.decode()
    escalation.refresh_from_db()
    assert escalation.status == "open" and not Deliverable.objects.exists()


def test_it_keeps_the_resolve_page_from_operators_who_may_only_view(client):
    viewer = get_user_model().objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_escalation"))
    client.force_login(viewer)
    escalation = _escalation()
    assert client.get(f"{INBOX}{escalation.pk}/change/").status_code == 200
    assert client.post(_resolve_page(escalation), {"resolution": "dismissed"}).status_code == 403
    escalation.refresh_from_db()
    assert escalation.status == "open"


def test_it_queues_a_dead_notification_again_and_leaves_the_others(admin_client):
    ChannelFactory(name="ops mail", kind="email", target="ops@example.com")
    ChannelFactory(name="ops chat", kind="slack", target="")
    dead, sent = Notification.objects.filter(escalation=_escalation()).order_by("pk")
    Notification.objects.filter(pk=dead.pk).update(status="dead", attempts=5, last_error="550 no such user")
    Notification.objects.filter(pk=sent.pk).update(status="sent", attempts=1)
    page = admin_client.post(
        OUTBOX, {"action": "retry_now", "_selected_action": [dead.pk, sent.pk]}, follow=True
    ).content.decode()
    dead.refresh_from_db()
    sent.refresh_from_db()
    assert (dead.status, dead.attempts) == ("pending", 0)
    assert sent.status == "sent"
    assert "1 notification(s) queued again" in page and "1 skipped" in page


CHANNEL_ADD = "/admin/escalations/notificationchannel/add/"


def test_a_new_channel_reads_its_secret_from_the_variable_named_after_its_slug(admin_client):
    form = {"name": "ops bot", "kind": "telegram", "target": "-100123", "severities": '["high"]', "tier": "primary"}
    for slug in ["", "Ops-Bot", "ops bot", "../x"]:
        refused = admin_client.post(CHANNEL_ADD, {**form, "slug": slug})
        assert refused.status_code == 200, slug
    assert not NotificationChannel.objects.exists()
    accepted = admin_client.post(CHANNEL_ADD, {**form, "slug": "ops_bot", "active": "on"})
    assert accepted.status_code == 302
    channel = NotificationChannel.objects.get()
    assert channel.secret_variable == "NOTIFY_SECRET_OPS_BOT"
    assert (
        "NOTIFY_SECRET_OPS_BOT"
        in admin_client.get(f"/admin/escalations/notificationchannel/{channel.pk}/change/").content.decode()
    )


def test_a_channel_s_slug_and_so_its_secret_cannot_be_changed_or_shared(admin_client):
    ChannelFactory(name="pager", kind="pagerduty", slug="pager", target="")
    mine = ChannelFactory(name="mine", kind="webhook", slug="mine", target="https://hooks.example/x")
    form = {"name": "mine", "kind": "webhook", "target": "https://hooks.example/x", "severities": '["high"]',
            "tier": "primary", "active": "on"}  # fmt: skip
    admin_client.post(f"/admin/escalations/notificationchannel/{mine.pk}/change/", {**form, "slug": "pager"})
    mine.refresh_from_db()
    assert mine.slug == "mine"  # read-only once created: it cannot take over the pager's secret
    copy = admin_client.post(CHANNEL_ADD, {**form, "name": "copy", "slug": "pager"})
    assert copy.status_code == 200 and NotificationChannel.objects.filter(slug="pager").count() == 1


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("http://hooks.example.com/x", "Only https URLs are allowed here."),
        ("https://127.0.0.1/x", "private, loopback or reserved"),
        ("https://169.254.169.254/latest/meta-data/", "private, loopback or reserved"),
        ("https://10.1.2.3/hook", "private, loopback or reserved"),
        ("https://[::1]:8443/hook", "private, loopback or reserved"),
        ("https://localhost/hook", "Loopback addresses are not allowed."),
        ("https://user:pw@hooks.example.com/x", "Put credentials in the channel's secret variable"),
        ("ftp://hooks.example.com/x", "An http(s) URL with a host is needed."),
    ],
)
def test_it_refuses_channel_urls_that_are_not_public_https(admin_client, settings, target, problem):
    settings.NOTIFY_ALLOW_HTTP_TARGETS = settings.NOTIFY_ALLOW_PRIVATE_TARGETS = False
    form = {"name": "hook", "slug": "hook", "kind": "webhook", "target": target, "severities": '["high"]',
            "tier": "primary"}  # fmt: skip
    refused = admin_client.post(CHANNEL_ADD, form)
    assert refused.status_code == 200
    assert problem in html.unescape(refused.content.decode())
    assert not NotificationChannel.objects.exists()
    settings.NOTIFY_ALLOW_HTTP_TARGETS = settings.NOTIFY_ALLOW_PRIVATE_TARGETS = True
    if problem.startswith(("Only https", "private", "Loopback")):  # allowed for local test servers
        assert admin_client.post(CHANNEL_ADD, form).status_code == 302


def test_it_rejects_an_email_channel_with_malformed_addresses(admin_client):
    form = {"name": "ops mail", "slug": "ops_mail", "kind": "email", "severities": '["high"]', "tier": "primary"}
    refused = admin_client.post(CHANNEL_ADD, {**form, "target": "ops@example.com; boss@example.com"})
    assert "E-mail addresses, separated by commas." in refused.content.decode()
    assert admin_client.post(CHANNEL_ADD, {**form, "target": "ops@example.com, boss@example.com"}).status_code == 302


def test_it_saves_notes_without_undoing_a_resolution_made_while_the_form_was_saved(admin_client, monkeypatch):
    escalation = _escalation()
    load = EscalationAdmin.get_object

    def load_then_resolve_elsewhere(self, request, object_id, from_field=None):
        loaded = load(self, request, object_id, from_field)
        if request.method == "POST":  # another request resolves it after the form loaded the row
            escalation_resolve(escalation=Escalation.objects.get(pk=loaded.pk), resolution="failed", actor="api")
        return loaded

    monkeypatch.setattr(EscalationAdmin, "get_object", load_then_resolve_elsewhere)
    inlines = {f"{p}-{k}": 0 for p in ("events", "notifications") for k in ("TOTAL_FORMS", "INITIAL_FORMS")}
    form = {"detail": escalation.detail, "notes": "called the client", **inlines}
    saved = admin_client.post(f"{INBOX}{escalation.pk}/change/", form)
    assert saved.status_code == 302
    escalation.refresh_from_db()
    assert (escalation.notes, escalation.status, escalation.resolution) == ("called the client", "resolved", "failed")
