"""A staff user has the same rights in the API as in the admin: its Django permissions, nothing more.

Every case is tried twice with the same request: a staff user who may only view is refused and
nothing changes; a superuser then succeeds, so a refusal never passes for a request that could not
have worked anyway.
"""

from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from agency.models import ApiKey, CycleRun, Task
from agency.services.api_keys import api_key_create
from escalations.models import Escalation, Notification
from tests.agency.factories import TaskFactory
from tests.escalations.factories import ChannelFactory, escalate

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer():
    """A staff user with every view permission of the product's apps and no other."""
    user = get_user_model().objects.create_user("viewer", password="pw-for-tests", is_staff=True)
    views = Permission.objects.filter(
        codename__startswith="view_", content_type__app_label__in=["agency", "escalations"]
    )
    user.user_permissions.set(views)
    return user


@pytest.fixture
def superuser():
    return get_user_model().objects.create_superuser("boss", password="pw-for-tests")


def _as(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def _refused_then_allowed(viewer, superuser, send: Callable[[APIClient], object], changed: Callable[[], bool]):
    """`send` as the viewer is refused and changes nothing; the same request as a superuser works."""
    response = send(_as(viewer))
    assert response.status_code == 403, response.content
    assert not changed()
    response = send(_as(superuser))
    assert response.status_code < 400, response.content
    assert changed()


# --- The API ---------------------------------------------------------------------------


def test_a_view_only_staff_user_can_read_everything_in_the_api(viewer):
    task = TaskFactory(status="processing")
    escalation = escalate()
    client = _as(viewer)
    for url in [
        "/api/v1/tasks",
        f"/api/v1/tasks/{task.pk}",
        "/api/v1/escalations",
        f"/api/v1/escalations/{escalation.pk}",
        "/api/v1/keys",
        "/api/v1/quote?domain=legal",
        f"/api/v1/traces/{escalation.trace_id or 'a' * 32}",
    ]:
        assert client.get(url).status_code == 200, url


def test_it_refuses_creating_a_task_to_a_view_only_staff_user(viewer, superuser):
    body = {"domain": "legal", "title": "T", "client_email": "c@example.com", "payment": "prepaid"}
    _refused_then_allowed(
        viewer, superuser, lambda c: c.post("/api/v1/tasks", body, format="json"), lambda: Task.objects.exists()
    )


def test_it_refuses_cancelling_a_task_to_a_view_only_staff_user(viewer, superuser):
    task = TaskFactory(status="paid")
    _refused_then_allowed(
        viewer,
        superuser,
        lambda c: c.post(f"/api/v1/tasks/{task.pk}/cancel", {}, format="json"),
        lambda: Task.objects.get(pk=task.pk).status == "cancelled",
    )


def test_it_refuses_raising_an_escalation_to_a_view_only_staff_user(viewer, superuser):
    task = TaskFactory(status="processing")
    _refused_then_allowed(
        viewer,
        superuser,
        lambda c: c.post("/api/v1/escalations", {"task": task.pk}, format="json"),
        lambda: Escalation.objects.filter(task=task).exists(),
    )


@pytest.mark.parametrize(
    ("action", "body", "done"),
    [
        ("acknowledge", {}, "acknowledged"),
        ("resolve", {"resolution": "dismissed"}, "resolved"),
    ],
)
def test_it_refuses_handling_an_escalation_to_a_view_only_staff_user(viewer, superuser, action, body, done):
    escalation = escalate()
    _refused_then_allowed(
        viewer,
        superuser,
        lambda c: c.post(f"/api/v1/escalations/{escalation.pk}/{action}", body, format="json"),
        lambda: Escalation.objects.get(pk=escalation.pk).status == done,
    )


def test_it_refuses_revoking_a_key_to_a_view_only_staff_user(viewer, superuser):
    api_key, _ = api_key_create(name="crm", scope="read")
    _refused_then_allowed(
        viewer,
        superuser,
        lambda c: c.post(f"/api/v1/keys/{api_key.pk}/revoke"),
        lambda: ApiKey.objects.get(pk=api_key.pk).revoked_at is not None,
    )


def test_it_refuses_starting_a_cycle_to_a_view_only_staff_user(viewer, superuser, django_capture_on_commit_callbacks):
    # The cycle is handed to the (eager) worker once the request commits.
    with django_capture_on_commit_callbacks(execute=True):
        assert _as(viewer).post("/api/v1/cycles").status_code == 403
    assert not CycleRun.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert _as(superuser).post("/api/v1/cycles").status_code == 202
    assert CycleRun.objects.exists()


def test_it_names_the_missing_permission(viewer):
    response = _as(viewer).post(f"/api/v1/tasks/{TaskFactory(status='paid').pk}/cancel", {}, format="json")
    assert response.json()["detail"] == "Your account lacks the permission(s) agency.change_task."


def test_a_staff_user_without_the_view_permission_cannot_read(viewer):
    viewer.user_permissions.remove(Permission.objects.get(codename="view_task"))
    client = _as(get_user_model().objects.get(pk=viewer.pk))  # permissions are cached per instance
    assert client.get("/api/v1/tasks").status_code == 403
    assert client.get("/api/v1/escalations").status_code == 200


def test_an_inactive_staff_user_is_refused_whatever_its_permissions(superuser):
    client = _as(superuser)
    get_user_model().objects.filter(pk=superuser.pk).update(is_active=False)
    assert client.get("/api/v1/tasks").status_code in (401, 403)


# --- The admin -------------------------------------------------------------------------


def _action(url: str, action: str, *pks) -> Callable:
    def send(client):
        response = client.post(url, {"action": action, "_selected_action": [str(pk) for pk in pks]})
        # An action that ran redirects back to the list; one the user may not run shows the list again.
        return response if response.status_code == 302 else _Refusal(response)

    return send


class _Refusal:
    status_code = 403

    def __init__(self, response):
        self.content = response.content


TASKS, KEYS, INBOX, OUTBOX = (
    "/admin/agency/task/",
    "/admin/agency/apikey/",
    "/admin/escalations/escalation/",
    "/admin/escalations/notification/",
)


@pytest.mark.parametrize(
    ("action", "start", "done"),
    [("mark_paid", "pending", "paid"), ("cancel", "paid", "cancelled")],
)
def test_a_view_only_staff_user_cannot_move_a_task_in_the_admin(viewer, superuser, action, start, done):
    task = TaskFactory(status=start)
    _refused_then_allowed(
        viewer, superuser, _action(TASKS, action, task.pk), lambda: Task.objects.get(pk=task.pk).status == done
    )


def test_a_view_only_staff_user_cannot_send_a_new_delivery_link_in_the_admin(viewer, superuser):
    task = TaskFactory(status="completed")
    _refused_then_allowed(viewer, superuser, _action(TASKS, "new_delivery_link", task.pk), lambda: task.emails.exists())


def test_a_view_only_staff_user_cannot_revoke_a_key_in_the_admin(viewer, superuser):
    api_key, _ = api_key_create(name="crm", scope="read")
    _refused_then_allowed(
        viewer,
        superuser,
        _action(KEYS, "revoke", api_key.pk),
        lambda: ApiKey.objects.get(pk=api_key.pk).revoked_at is not None,
    )


def test_a_view_only_staff_user_cannot_revoke_a_delivery_link_in_the_admin(viewer, superuser):
    from agency.models import DeliveryLink
    from agency.services.delivery import delivery_link_issue

    issued = delivery_link_issue(task=TaskFactory(status="completed"))
    _refused_then_allowed(
        viewer,
        superuser,
        _action("/admin/agency/deliverylink/", "revoke", issued.link.pk),
        lambda: DeliveryLink.objects.get(pk=issued.link.pk).revoked_at is not None,
    )


@pytest.mark.parametrize(
    ("action", "done"),
    [
        ("acknowledge", lambda e: e.status == "acknowledged"),
        ("assign_to_me", lambda e: e.assignee_id is not None),
        ("resolve_retried", lambda e: e.resolution == "retried"),
        ("resolve_failed", lambda e: e.resolution == "failed"),
        ("resolve_refunded", lambda e: e.resolution == "refunded"),
        ("dismiss", lambda e: e.resolution == "dismissed"),
    ],
)
def test_a_view_only_staff_user_cannot_handle_an_escalation_in_the_admin(viewer, superuser, action, done):
    escalation = escalate()
    _refused_then_allowed(
        viewer, superuser, _action(INBOX, action, escalation.pk), lambda: done(Escalation.objects.get(pk=escalation.pk))
    )


def test_a_view_only_staff_user_cannot_resolve_on_the_resolve_page(viewer, superuser):
    escalation = escalate()
    _refused_then_allowed(
        viewer,
        superuser,
        lambda c: c.post(f"{INBOX}{escalation.pk}/resolve/", {"resolution": "failed", "note": ""}),
        lambda: Escalation.objects.get(pk=escalation.pk).status == "resolved",
    )


def test_a_view_only_staff_user_cannot_requeue_a_dead_notification(viewer, superuser):
    ChannelFactory()
    escalate()
    notification = Notification.objects.get()
    Notification.objects.filter(pk=notification.pk).update(status="dead")
    _refused_then_allowed(
        viewer,
        superuser,
        _action(OUTBOX, "retry_now", notification.pk),
        lambda: Notification.objects.get(pk=notification.pk).status != "dead",
    )


def test_a_view_only_staff_user_cannot_edit_a_task_or_a_channel_in_the_admin(viewer, superuser):
    task = TaskFactory(status="paid", title="Before")
    channel = ChannelFactory(name="ops", target="http://127.0.0.1:9/")
    inlines = {
        f"{name}-{count}_FORMS": 0
        for name in ("events", "work_attempts", "deliverables")
        for count in ("TOTAL", "INITIAL")
    }
    task_form = {"title": "After", "description": "", "operator_note": "", **inlines}
    _refused_then_allowed(
        viewer,
        superuser,
        lambda c: c.post(f"{TASKS}{task.pk}/change/", task_form),
        lambda: Task.objects.get(pk=task.pk).title == "After",
    )
    response = _as(viewer).post(
        f"/admin/escalations/notificationchannel/{channel.pk}/change/",
        {"name": "ops", "kind": "webhook", "target": "http://attacker.example/", "severities": '["normal"]'},
    )
    assert response.status_code == 403
    channel.refresh_from_db()
    assert channel.target == "http://127.0.0.1:9/"


def test_every_admin_action_of_the_product_declares_the_permission_it_needs():
    from django.contrib import admin

    undeclared = [
        f"{model_admin}.{name}"
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in {"agency", "escalations", "bids", "arena", "tracing"}
        for name in (model_admin.actions or [])
        if not getattr(getattr(model_admin, name), "allowed_permissions", None)
    ]
    assert undeclared == []
