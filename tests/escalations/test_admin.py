"""The operator inbox in the admin (docs/escalations.md): the inbox and outbox lists, the escalation page with
its buttons, context and timeline, the actions, the resolve page and the channels."""

import hashlib
import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agency.models import Deliverable, Task
from escalations.admin import EscalationAdmin
from escalations.models import Escalation, EscalationEvent, Notification, NotificationChannel
from escalations.services import escalation_acknowledge, escalation_assign, escalation_open, escalation_resolve
from tests.agency.factories import TaskFactory
from tests.escalations.factories import ChannelFactory

pytestmark = pytest.mark.django_db
INBOX = "/admin/escalations/escalation/"
OUTBOX = "/admin/escalations/notification/"
INBOX_COLUMNS = ["task", "reason", "severity", "status", "waiting", "attempts", "last error", "assignee"]


@pytest.fixture
def deliverable_files(media_root):
    """Where deliverables are stored in this test (conftest's `media_root` points the file field there)."""
    return media_root / "private"


def _escalation(reason: str = "attempts_exhausted", context: dict | None = None, **task_fields) -> Escalation:
    task = TaskFactory(status="processing", **task_fields)
    return escalation_open(task=task, reason=reason, actor="pipeline", context=context)[0]


def _staff(username: str, **fields):
    return get_user_model().objects.create_user(username, password="x", is_staff=True, **fields)


def _page_queries(client, url: str = INBOX) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def _act(client, action: str, *escalations: Escalation):
    return client.post(INBOX, {"action": action, "_selected_action": [e.pk for e in escalations]}, follow=True)


def _change_page(escalation: Escalation) -> str:
    return f"{INBOX}{escalation.pk}/change/"


def _resolve_page(escalation: Escalation) -> str:
    return f"{INBOX}{escalation.pk}/resolve/"


def _button(escalation: Escalation, name: str) -> str:
    return f"{INBOX}{escalation.pk}/{name}/"


def _h1(page: str) -> str:
    return html.unescape(re.search(r"<h1>(.*?)</h1>", page, re.S)[1])


def _cell(page: str, column: str) -> str:
    """The first row's cell of a changelist column, as HTML."""
    return re.search(rf'<t[dh] class="field-{column}[^"]*">(.*?)</t[dh]>', page, re.S)[1]


def _operator_actions(page: str) -> str:
    return re.search(r'<div class="module" id="operator-actions">(.*?)\n</div>', page, re.S)[1]


def _buttons(page: str) -> set[str]:
    return set(re.findall(r'id="(acknowledge-form|assign-form|resolve-link)"', _operator_actions(page)))


def _timeline(page: str) -> list[str]:
    listed = re.search(r'<ol class="escalation-timeline">(.*?)</ol>', page, re.S)[1]
    return [html.unescape(row) for row in re.findall(r"<li[^>]*>(.*?)</li>", listed, re.S)]


def _messages(response) -> list[tuple[str, str]]:
    """(level, text) of each message shown on the page the response ended on."""
    listed = re.search(r'<ul class="messagelist">(.*?)</ul>', response.content.decode(), re.S)
    return [(level, html.unescape(text)) for level, text in re.findall(r'<li class="(\w+)">(.*?)</li>', listed[1])]


# --- The inbox ----------------------------------------------------------------------------------


def test_it_calls_the_inbox_operator_inbox(admin_client):
    _escalation()
    page = admin_client.get(INBOX).content.decode()
    assert _h1(page) == "Operator inbox"
    assert "<title>Operator inbox | Agency</title>" in page
    assert "Select escalation to change" not in page


def test_it_lists_the_columns_an_operator_decides_on_and_no_bare_id(admin_client):
    _escalation()
    page = admin_client.get(INBOX).content.decode()
    headers = re.findall(
        r'<th scope="col" class="[^"]*column-\w+[^"]*">.*?<div class="text">(?:<a [^>]*>|<span>)([^<]*)<', page, re.S
    )
    assert headers == [c.capitalize() for c in INBOX_COLUMNS]
    assert "column-id" not in page


def test_it_links_the_short_task_to_the_escalation(admin_client):
    escalation = _escalation(title="Reconcile the Q3 ledger for the northern region")
    cell = _cell(admin_client.get(INBOX).content.decode(), "task_short")
    assert f'<a href="{_change_page(escalation)}">' in cell
    assert f">#{escalation.task_id} Reconcile the Q3 ledger for the…<" in cell  # 32 characters
    assert 'title="Reconcile the Q3 ledger for the northern region"' in cell


@pytest.mark.parametrize(
    ("waited", "shown"),
    [
        (timedelta(minutes=12, seconds=50), "12 min"),
        (timedelta(hours=3, minutes=12, seconds=30), "3 h 12 min"),
        (timedelta(days=2, hours=4, minutes=59), "2 d 4 h"),
    ],
)
def test_it_shows_how_long_an_unresolved_escalation_has_waited(admin_client, waited, shown):
    escalation = _escalation()
    Escalation.objects.filter(pk=escalation.pk).update(created_at=timezone.now() - waited)
    cell = _cell(admin_client.get(INBOX).content.decode(), "waiting")
    assert re.fullmatch(rf'<span class="nowrap" title="open since [^"]+ UTC">{shown}</span>', cell)


def test_it_shows_how_long_a_resolved_escalation_took(admin_client):
    escalation = _escalation()
    escalation_resolve(escalation=escalation, resolution="dismissed", actor="op")
    opened = datetime(2026, 12, 1, 10, 3, tzinfo=UTC)
    Escalation.objects.filter(pk=escalation.pk).update(created_at=opened, resolved_at=opened + timedelta(hours=26))
    cell = _cell(admin_client.get(INBOX).content.decode(), "waiting")
    assert cell == '<span title="resolved 2026-12-02 12:03 UTC">took <span class="nowrap">1 d 2 h</span></span>'


def test_it_sorts_by_waiting_time_longest_last_when_asked_up(admin_client):
    escalations = [_escalation(title=f"task {n}") for n in range(3)]
    for hours, escalation in zip([5, 1, 3], escalations, strict=True):
        Escalation.objects.filter(pk=escalation.pk).update(created_at=timezone.now() - timedelta(hours=hours))
    page = admin_client.get(f"{INBOX}?o={INBOX_COLUMNS.index('waiting') + 1}").content.decode()
    assert re.findall(r">#\d+ task (\d)<", page) == ["1", "2", "0"]  # 1 h, 3 h, 5 h


def test_it_lists_attempts_and_the_shortened_last_error_with_the_whole_error_on_hover(admin_client):
    error = "upstream model timed out " * 10
    _escalation(attempts=3, last_error=error)
    page = admin_client.get(INBOX).content.decode()
    assert '<td class="field-attempts">3</td>' in page
    assert _cell(page, "error") == f'<span title="{error}">{error[:59]}…</span>'


def test_it_renders_the_inbox_with_the_same_queries_for_3_and_for_30_escalations(admin_client):
    def grow(n: int) -> None:
        for _ in range(n):  # each with a task and an operator of its own
            escalation = _escalation(attempts=2, last_error="boom")
            escalation_assign(escalation=escalation, assignee=_staff(f"op{escalation.pk}"), actor="t")

    grow(3)
    few = _page_queries(admin_client)
    grow(27)
    assert Escalation.objects.values("task", "assignee").distinct().count() == 30
    assert _page_queries(admin_client) == few


# --- The outbox ---------------------------------------------------------------------------------


def test_it_calls_the_outbox_notification_outbox(admin_client):
    page = admin_client.get(OUTBOX).content.decode()
    assert _h1(page) == "Notification outbox"
    assert "Select notification to change" not in page


def test_it_lists_the_outbox_with_short_columns_and_the_shortened_last_error(admin_client):
    ChannelFactory(name="ops mail", kind="email", target="ops@example.com")
    escalation = _escalation(title="Reconcile Q3")
    error = "550 5.1.1 <ops@example.com>: Recipient address rejected: User unknown in virtual mailbox table"
    Notification.objects.update(status="dead", attempts=8, last_error=error)
    page = admin_client.get(OUTBOX).content.decode()
    assert f'<span title="Reconcile Q3">#{escalation.pk} Reconcile Q3</span>' in _cell(page, "escalation_short")
    assert [_cell(page, c) for c in ("channel_name", "event", "status", "attempts")] == [
        "ops mail",
        "Opened",
        "Dead",
        "8",
    ]
    assert _cell(page, "error") == f'<span title="{html.escape(error)}">{html.escape(error[:59])}…</span>'


@pytest.mark.parametrize(("status", "shown"), [("pending", "2026-12-01 10:03"), ("sent", "-"), ("dead", "-")])
def test_it_shows_the_next_attempt_only_for_a_row_still_to_be_sent(admin_client, status, shown):
    ChannelFactory()
    _escalation()
    Notification.objects.update(status=status, next_attempt_at=datetime(2026, 12, 1, 10, 3, tzinfo=UTC))
    assert _cell(admin_client.get(OUTBOX).content.decode(), "next_attempt") == shown


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


# --- Actions on the inbox's rows -------------------------------------------------------------------


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


# --- The escalation page ------------------------------------------------------------------------


def test_it_titles_the_escalation_page_with_its_task_and_reason(admin_client):
    escalation = _escalation(title="Reconcile Q3")
    page = admin_client.get(_change_page(escalation)).content.decode()
    heading = f"Escalation #{escalation.pk}: Reconcile Q3 — attempts exhausted"
    assert _h1(page) == heading
    assert f"<title>{heading} | Agency</title>" in page
    assert "Change escalation" not in page


@pytest.mark.parametrize(
    ("make", "buttons"),
    [
        (lambda e: e, {"acknowledge-form", "assign-form", "resolve-link"}),
        (lambda e: escalation_acknowledge(escalation=e, actor="op"), {"assign-form", "resolve-link"}),
        (lambda e: escalation_resolve(escalation=e, resolution="dismissed", actor="op"), set()),
    ],
    ids=["open", "acknowledged", "resolved"],
)
def test_it_offers_only_the_buttons_that_apply(admin_client, make, buttons):
    escalation = make(_escalation())
    assert _buttons(admin_client.get(_change_page(escalation)).content.decode()) == buttons


def test_it_says_how_a_resolved_escalation_was_resolved_instead_of_offering_buttons(admin_client):
    escalation = _escalation()
    escalation_resolve(escalation=escalation, resolution="dismissed", actor="op")
    Escalation.objects.filter(pk=escalation.pk).update(resolved_at=escalation.created_at + timedelta(minutes=40))
    panel = _operator_actions(admin_client.get(_change_page(escalation)).content.decode())
    assert " ".join(re.sub(r"<[^>]+>", "", panel).split()) == "Resolved as dismissed (took 40 min)."


def test_it_acknowledges_from_the_escalation_page(admin_client, admin_user):
    escalation = _escalation()
    response = admin_client.post(_button(escalation, "acknowledge"))
    assert response.status_code == 302 and response.url == _change_page(escalation)
    escalation.refresh_from_db()
    assert escalation.status == "acknowledged"
    assert (
        EscalationEvent.objects.get(escalation=escalation, kind="acknowledged").actor == f"admin:user:{admin_user.pk}"
    )
    assert _messages(admin_client.get(response.url)) == [("success", f"Escalation #{escalation.pk} acknowledged.")]


def test_it_shows_the_refusal_when_the_escalation_was_acknowledged_meanwhile(admin_client):
    escalation = _escalation()
    escalation_acknowledge(escalation=escalation, actor="api:key:1")  # another operator was quicker
    response = admin_client.post(_button(escalation, "acknowledge"), follow=True)
    assert response.redirect_chain == [(_change_page(escalation), 302)]
    refusal = f"Escalation #{escalation.pk}: Only an open escalation can be acknowledged."
    assert _messages(response) == [("error", refusal)]
    assert EscalationEvent.objects.filter(escalation=escalation, kind="acknowledged").count() == 1


def test_it_offers_the_active_staff_to_assign_with_the_operator_looking_first_chosen(admin_client, admin_user):
    _staff("margaret"), _staff("gone", is_active=False)
    get_user_model().objects.create_user("client", password="x")  # not staff
    escalation = _escalation()
    panel = _operator_actions(admin_client.get(_change_page(escalation)).content.decode())
    options = re.findall(r'<option value="(\d*)"( selected)?>([^<]*)</option>', panel)
    assert [(name, bool(chosen)) for _, chosen, name in options] == [
        ("nobody", False), ("admin", True), ("margaret", False)
    ]  # fmt: skip


def test_it_assigns_from_the_escalation_page_to_the_chosen_operator(admin_client, admin_user):
    margaret = _staff("margaret")
    escalation = _escalation()
    response = admin_client.post(_button(escalation, "assign"), {"assignee": margaret.pk}, follow=True)
    escalation.refresh_from_db()
    assert escalation.assignee == margaret
    assigned = EscalationEvent.objects.get(escalation=escalation, kind="assigned")
    assert (assigned.actor, assigned.detail) == (f"admin:user:{admin_user.pk}", "to margaret")
    assert _messages(response) == [("success", f"Escalation #{escalation.pk} assigned to margaret.")]


def test_it_unassigns_when_nobody_is_chosen(admin_client, admin_user):
    escalation = _escalation()
    escalation_assign(escalation=escalation, assignee=admin_user, actor="t")
    admin_client.post(_button(escalation, "assign"), {"assignee": ""})
    escalation.refresh_from_db()
    assert escalation.assignee is None


def test_it_refuses_to_assign_someone_who_is_not_active_staff(admin_client):
    customer = get_user_model().objects.create_user("client", password="x")
    escalation = _escalation()
    response = admin_client.post(_button(escalation, "assign"), {"assignee": customer.pk}, follow=True)
    assert _messages(response) == [("error", "Choose an active staff user to assign.")]
    escalation.refresh_from_db()
    assert escalation.assignee is None


def test_it_shows_the_refusal_when_assigning_a_resolved_escalation(admin_client, admin_user):
    escalation = _escalation()
    escalation_resolve(escalation=escalation, resolution="dismissed", actor="api:key:1")
    response = admin_client.post(_button(escalation, "assign"), {"assignee": admin_user.pk}, follow=True)
    assert _messages(response) == [
        ("error", f"Escalation #{escalation.pk}: A resolved escalation cannot be reassigned.")
    ]
    escalation.refresh_from_db()
    assert escalation.assignee is None


@pytest.mark.parametrize("button", ["acknowledge", "assign"])
def test_it_refuses_a_button_s_url_opened_with_get(admin_client, admin_user, button):
    escalation = _escalation()
    response = admin_client.get(_button(escalation, button), {"assignee": admin_user.pk})
    assert response.status_code == 405
    escalation.refresh_from_db()
    assert (escalation.status, escalation.assignee) == ("open", None)


@pytest.mark.parametrize("button", ["acknowledge", "assign"])
def test_it_refuses_a_button_post_without_the_csrf_token(admin_user, button):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    escalation = _escalation()
    assert client.post(_button(escalation, button), {"assignee": admin_user.pk}).status_code == 403
    escalation.refresh_from_db()
    assert (escalation.status, escalation.assignee) == ("open", None)


@pytest.mark.parametrize("button", ["acknowledge", "assign"])
def test_it_keeps_the_buttons_from_operators_who_may_only_view(client, button):
    viewer = _staff("viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_escalation"))
    client.force_login(viewer)
    escalation = _escalation()
    assert _buttons(client.get(_change_page(escalation)).content.decode()) == set()
    assert client.post(_button(escalation, button), {"assignee": viewer.pk}).status_code == 403
    escalation.refresh_from_db()
    assert (escalation.status, escalation.assignee) == ("open", None)


def test_it_keeps_the_detail_as_the_opener_wrote_it_and_saves_the_notes(admin_client):
    escalation = _escalation()
    Escalation.objects.filter(pk=escalation.pk).update(detail="three attempts timed out")
    page = admin_client.get(_change_page(escalation)).content.decode()
    assert 'name="detail"' not in page and "three attempts timed out" in page
    inline = {"notifications-TOTAL_FORMS": 0, "notifications-INITIAL_FORMS": 0}
    form = {"detail": "nothing went wrong", "notes": "called the client", **inline}
    assert admin_client.post(_change_page(escalation), form).status_code == 302
    escalation.refresh_from_db()
    assert (escalation.detail, escalation.notes) == ("three attempts timed out", "called the client")


def test_it_shows_the_context_as_a_table_with_the_markup_in_it_escaped(admin_client):
    escalation = _escalation(context={"note": "<script>alert(1)</script>"})
    page = admin_client.get(_change_page(escalation)).content.decode()
    assert '<tr><th scope="row">note</th><td>&lt;script&gt;alert(1)&lt;/script&gt;</td></tr>' in page
    assert "<script>alert(1)" not in page


def test_it_shows_nested_context_values_as_compact_json(admin_client):
    escalation = _escalation(context={"models": {"tried": ["gpt-4o", "<b>llama</b>"], "ok": False}})
    page = admin_client.get(_change_page(escalation)).content.decode()
    shown = re.search(r'<th scope="row">models</th><td>(.*?)</td>', page)[1]
    assert html.unescape(shown) == '{"ok": false, "tried": ["gpt-4o", "<b>llama</b>"]}'


def test_it_tells_the_whole_life_of_an_escalation_as_sentences_oldest_first(admin_client, admin_user):
    escalation = _escalation(title="Reconcile Q3")
    admin_client.post(_button(escalation, "acknowledge"))
    admin_client.post(_button(escalation, "assign"), {"assignee": admin_user.pk})
    upload = SimpleUploadedFile("q3.csv", b"account,difference\n", content_type="text/csv")
    form = {"resolution": "completed_manually", "note": "Reconciled by hand.", "deliverable": upload}
    assert admin_client.post(_resolve_page(escalation), form).status_code == 302
    # Fixed times, in the order the events happened, so the sentences can be written out.
    start = datetime(2026, 12, 1, 10, 3, tzinfo=UTC)
    for minutes, event in zip([0, 17, 18, 102], escalation.events.order_by("pk"), strict=True):
        EscalationEvent.objects.filter(pk=event.pk).update(created_at=start + timedelta(minutes=minutes))
    assert _timeline(admin_client.get(_change_page(escalation)).content.decode()) == [
        "2026-12-01 10:03 UTC — the pipeline opened the escalation: attempts exhausted.",
        "2026-12-01 10:20 UTC — operator admin (admin) acknowledged it.",
        "2026-12-01 10:21 UTC — operator admin (admin) assigned it to admin.",
        "2026-12-01 11:45 UTC — operator admin (admin) resolved it as completed manually: Reconciled by hand.",
    ]


def test_it_lists_the_timeline_by_time_not_by_insertion(admin_client):
    escalation = _escalation()
    late = EscalationEvent.objects.create(escalation=escalation, kind="acknowledged", actor="api:key:4")
    EscalationEvent.objects.filter(pk=late.pk).update(created_at=escalation.created_at - timedelta(minutes=5))
    timeline = _timeline(admin_client.get(_change_page(escalation)).content.decode())
    assert [row.split(" — ")[1] for row in timeline] == [
        "API key #4 acknowledged it.", "the pipeline opened the escalation: attempts exhausted."
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "actor", "detail", "sentence"),
    [
        ("reminder", "timer", "", "the timer reminded the primary channels: nobody had acknowledged it yet."),
        ("secondary", "timer", "", "the timer told the secondary channels: nobody had acknowledged it yet."),
        ("acknowledged", "api:key:7", "", "API key #7 acknowledged it."),
        ("acknowledged", "api:user:{op}", "", "operator op (API) acknowledged it."),
        ("acknowledged", "admin:user:999999", "", "a deleted operator (#999999, admin) acknowledged it."),
        ("opened", "pipeline worker-2", "", "the pipeline (worker-2) opened the escalation: arena no winner."),
        ("opened", "arena competition #4", "", "arena competition #4 opened the escalation: arena no winner."),
        ("assigned", "admin:user:{op}", "to nobody", "operator op (admin) assigned it to nobody."),
        ("note_added", "admin:user:{op}", "called the client", "operator op (admin) note added: called the client."),
        ("paused", "api:anonymous", "", "an anonymous API caller paused."),
    ],
)
def test_it_tells_each_kind_of_event_and_actor_as_a_sentence(admin_client, kind, actor, detail, sentence):
    op = _staff("op")
    escalation = _escalation(reason="arena_no_winner")
    EscalationEvent.objects.create(escalation=escalation, kind=kind, actor=actor.format(op=op.pk), detail=detail)
    last = _timeline(admin_client.get(_change_page(escalation)).content.decode())[-1]
    assert last.split(" — ", 1)[1] == sentence


def test_it_escapes_what_the_timeline_quotes(admin_client):
    escalation = _escalation()
    EscalationEvent.objects.create(escalation=escalation, kind="noted", actor="<i>bot</i>", detail="<script>x</script>")
    page = admin_client.get(_change_page(escalation)).content.decode()
    assert "&lt;i&gt;bot&lt;/i&gt; noted: &lt;script&gt;x&lt;/script&gt;." in page


def test_it_renders_the_escalation_page_with_the_same_queries_for_3_and_for_30_events(admin_client):
    escalation = _escalation()

    def grow(n: int) -> None:
        for _ in range(n):  # each by an operator of its own, named on the page
            operator = _staff(f"op{EscalationEvent.objects.count()}")
            EscalationEvent.objects.create(escalation=escalation, kind="noted", actor=f"admin:user:{operator.pk}")

    grow(2)
    few = _page_queries(admin_client, _change_page(escalation))
    grow(27)
    page = admin_client.get(_change_page(escalation)).content.decode()
    assert len(_timeline(page)) == 30 and "operator op29 (admin) noted." in page
    assert _page_queries(admin_client, _change_page(escalation)) == few


# --- The resolve page ---------------------------------------------------------------------------


def test_it_links_the_change_page_to_the_resolve_page_and_shows_the_notifications(admin_client):
    ChannelFactory(name="ops mail", kind="email", target="ops@example.com")
    escalation = _escalation()
    page = admin_client.get(f"{INBOX}{escalation.pk}/change/").content.decode()
    assert f'href="{_resolve_page(escalation)}"' in page
    assert "ops mail (email, primary)" in page  # the outbox row's channel, in the inline


def test_it_preselects_no_resolution(admin_client):
    page = admin_client.get(_resolve_page(_escalation())).content.decode()
    select = re.search(r'<select name="resolution"[^>]*>(.*?)</select>', page, re.S)[1]
    assert re.findall(r"<option [^>]*selected[^>]*>([^<]*)<", select) == ["— choose a resolution —"]
    assert 'value="" selected' in select


def test_it_refuses_a_resolution_left_empty(admin_client):
    escalation = _escalation()
    response = admin_client.post(_resolve_page(escalation), {"resolution": "", "note": "done"})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    escalation.refresh_from_db()
    assert escalation.status == "open"


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
    form = {"notes": "called the client", "notifications-TOTAL_FORMS": 0, "notifications-INITIAL_FORMS": 0}
    saved = admin_client.post(f"{INBOX}{escalation.pk}/change/", form)
    assert saved.status_code == 302
    escalation.refresh_from_db()
    assert (escalation.notes, escalation.status, escalation.resolution) == ("called the client", "resolved", "failed")
