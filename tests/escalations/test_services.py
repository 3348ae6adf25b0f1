"""Escalation rules and services (docs/escalations.md)."""

import io
from datetime import timedelta
from itertools import product

import pytest
from django.core.files import File
from django.db import DatabaseError
from django.utils import timezone

from agency.models import Task, TaskEvent
from agency.services.delivery import deliverable_add
from escalations.models import Escalation, EscalationEvent, Notification
from escalations.outbox import outbox_send_due
from escalations.services import (
    EscalationConflict,
    escalation_acknowledge,
    escalation_assign,
    escalation_open,
    escalation_resolve,
    escalation_timers_run,
    failure_decide,
    notification_requeue,
    notifications_relay,
)
from tests.agency.factories import TaskFactory
from tests.concurrency import run_at_once
from tests.escalations import fakes
from tests.escalations.factories import ChannelFactory, escalate

# (attempts exhausted?, high value?, error?) → expected decision, written from the rules in docs/escalations.md.
TABLE = {
    (True, True, True): ("escalate", "attempts_exhausted"),
    (True, True, False): ("escalate", "attempts_exhausted"),
    (True, False, True): ("escalate", "attempts_exhausted"),
    (True, False, False): ("escalate", "attempts_exhausted"),
    (False, True, True): ("escalate", "high_value_failure"),
    (False, True, False): ("retry", ""),
    (False, False, True): ("fail", ""),
    (False, False, False): ("retry", ""),
}


@pytest.mark.parametrize(("exhausted", "high_value", "errored"), list(product([True, False], repeat=3)))
def test_it_decides_between_escalating_failing_and_retrying(exhausted, high_value, errored):
    decision = failure_decide(attempts=3 if exhausted else 1, is_high_value=high_value, errored=errored)
    assert (decision.action, decision.reason) == TABLE[(exhausted, high_value, errored)]


@pytest.mark.django_db
def test_it_escalates_a_task_with_its_status_event_and_context():
    task = TaskFactory(status="processing", is_high_value=True, attempts=2, last_error="timeout")
    escalation, created = escalation_open(task=task, reason="high_value_failure", actor="pipeline")
    assert created
    task.refresh_from_db()
    assert task.status == "escalated"
    assert (escalation.severity, escalation.status, escalation.idempotency_key) == (
        "high",
        "open",
        "high_value_failure:1",
    )
    assert escalation.context["attempts"] == 2 and escalation.context["error"] == "timeout"
    assert EscalationEvent.objects.get(escalation=escalation).kind == "opened"


@pytest.mark.django_db
def test_it_returns_the_open_escalation_for_a_repeat_and_opens_a_new_episode_after_resolution():
    task = TaskFactory(status="processing")
    first, created = escalation_open(task=task, reason="attempts_exhausted", actor="a")
    again, created_again = escalation_open(task=task, reason="attempts_exhausted", actor="b")
    assert created and not created_again and again.pk == first.pk
    escalation_resolve(escalation=first, resolution="dismissed", actor="op")
    second, created_second = escalation_open(task=task, reason="attempts_exhausted", actor="c")
    assert created_second and second.pk != first.pk
    assert second.idempotency_key == "attempts_exhausted:2"


# The first write of the escalation, one in the middle, and the last (the outbox rows).
@pytest.mark.parametrize("table", ["escalations_escalation", "escalations_escalationevent", "escalations_notification"])
@pytest.mark.django_db(transaction=True)
def test_it_keeps_and_sends_nothing_when_part_of_the_escalation_cannot_be_written(refuse_inserts, table, monkeypatch):
    monkeypatch.setenv("NOTIFY_SECRET_TEST_WEBHOOK", fakes.WEBHOOK_SECRET)
    with fakes.webhook() as server:
        ChannelFactory(kind="webhook", target=server.url, slug="test_webhook")
        task = TaskFactory(status="processing")
        refuse_inserts(table)
        # SQLite reports a trigger's ABORT as an integrity error, which reads as a lost race: a 409, not a 500.
        with pytest.raises((DatabaseError, EscalationConflict)):
            escalation_open(task=task, reason="attempts_exhausted", actor="pipeline")
        outbox_send_due()
    task.refresh_from_db()
    assert task.status == "processing"
    assert not Escalation.objects.exists()
    assert not TaskEvent.objects.filter(task=task).exists()
    assert not Notification.objects.exists()
    assert not server.requests


@pytest.mark.django_db
def test_it_acknowledges_once():
    escalation, _ = escalation_open(task=TaskFactory(status="processing"), reason="integration", actor="api")
    escalation_acknowledge(escalation=escalation, actor="op")
    with pytest.raises(EscalationConflict) as refused:
        escalation_acknowledge(escalation=escalation, actor="op")
    assert (str(refused.value), refused.value.existing_id) == (
        "Only an open escalation can be acknowledged.",
        escalation.pk,
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("resolution", "task_status"),
    [("retried", "processing"), ("failed", "failed"), ("refunded", "failed"), ("dismissed", "escalated")],
)
def test_it_applies_each_resolution_to_the_task(resolution, task_status):
    task = TaskFactory(status="processing")
    escalation, _ = escalation_open(task=task, reason="attempts_exhausted", actor="pipeline")
    resolved = escalation_resolve(escalation=escalation, resolution=resolution, actor="op", note="checked")
    task.refresh_from_db()
    assert (resolved.status, resolved.resolution, resolved.live_key) == ("resolved", resolution, None)
    assert task.status == task_status
    assert task.needs_operator is (resolution == "refunded")
    if task_status != "escalated":
        last = TaskEvent.objects.filter(task=task).latest("id")
        assert (last.to_status, last.actor, last.reason) == (task_status, "op", f"escalation resolved: {resolution}")


@pytest.mark.django_db
def test_the_resolved_message_says_how_and_why():
    ChannelFactory()
    escalation = escalate()
    escalation_resolve(escalation=escalation, resolution="refunded", actor="op", note="paid back in full")
    payload = escalation.notifications.get(event="resolved").payload
    assert (payload["resolution"], payload["note"]) == ("refunded", "paid back in full")


@pytest.mark.django_db
def test_it_completes_by_hand_only_with_a_deliverable():
    task = TaskFactory(status="processing")
    escalation, _ = escalation_open(task=task, reason="attempts_exhausted", actor="pipeline")
    with pytest.raises(EscalationConflict) as refused:
        escalation_resolve(escalation=escalation, resolution="completed_manually", actor="op")
    assert str(refused.value) == "Upload a deliverable before completing the task by hand."
    assert Escalation.objects.get(pk=escalation.pk).status == "open"  # nothing kept
    deliverable_add(task=task, name="done.csv", content=b"a\n", content_type="text/csv")
    escalation_resolve(escalation=escalation, resolution="completed_manually", actor="op")
    task.refresh_from_db()
    assert task.status == "completed"


@pytest.mark.django_db
def test_it_refuses_to_resolve_twice():
    escalation, _ = escalation_open(task=TaskFactory(status="processing"), reason="attempts_exhausted", actor="p")
    escalation_resolve(escalation=escalation, resolution="dismissed", actor="op")
    with pytest.raises(EscalationConflict) as refused:
        escalation_resolve(escalation=escalation, resolution="failed", actor="op")
    assert refused.value.existing_id == escalation.pk


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_it_opens_one_escalation_with_one_outbox_row_per_channel_for_twenty_concurrent_callers(settings):
    task = TaskFactory(status="processing")
    # Nobody listens there: rows stay pending after the eager relay's failed tries, and are counted.
    channels = [ChannelFactory(kind="webhook", target="http://127.0.0.1:9/") for _ in range(3)]

    def open_one(i):
        escalation, _ = escalation_open(task=Task.objects.get(pk=task.pk), reason="attempts_exhausted", actor=f"w{i}")
        return escalation.pk

    ids = run_at_once(20, open_one)
    assert len(ids) == 20 and len(set(ids)) == 1
    assert Escalation.objects.filter(task=task).count() == 1
    assert sorted(Notification.objects.values_list("channel_id", flat=True)) == sorted(c.pk for c in channels)
    assert list(TaskEvent.objects.filter(task=task).values_list("to_status", flat=True)) == ["escalated"]


@pytest.mark.django_db
def test_it_lists_unresolved_high_severity_escalations_first_in_the_admin(admin_client):
    old_normal = escalation_open(task=TaskFactory(status="processing"), reason="integration", actor="a")[0]
    high = escalation_open(task=TaskFactory(status="processing", is_high_value=True), reason="integration", actor="a")[
        0
    ]
    done = escalation_open(task=TaskFactory(status="processing", is_high_value=True), reason="integration", actor="a")[
        0
    ]
    escalation_resolve(escalation=done, resolution="dismissed", actor="op")
    page = admin_client.get("/admin/escalations/escalation/")
    assert page.status_code == 200
    order = [e.pk for e in page.context["cl"].result_list]
    assert order == [high.pk, old_normal.pk, done.pk]
    detail = admin_client.get(f"/admin/escalations/escalation/{done.pk}/change/")
    assert detail.status_code == 200
    assert b"resolved" in detail.content and b"opened" in detail.content  # the timeline inline


# --- Timers -----------------------------------------------------------------------


@pytest.mark.django_db
def test_timers_remind_at_thirty_minutes_and_go_secondary_at_two_hours(signed, settings):
    settings.ESCALATION_REMIND_AFTER_MINUTES, settings.ESCALATION_SECONDARY_AFTER_MINUTES = 30, 120
    with fakes.webhook() as server:
        primary = signed(server)
        secondary = signed(server, tier="secondary")
        escalation = escalate()
        opened = escalation.created_at

        def events_at(minutes: float) -> list[tuple[str, int]]:
            escalation_timers_run(now=opened + timedelta(minutes=minutes))
            outbox_send_due(now=opened + timedelta(minutes=minutes))
            rows = Notification.objects.filter(status="sent").order_by("pk")
            return [(row.event, row.channel_id) for row in rows]

        assert events_at(29.9) == [("opened", primary.pk)]
        assert events_at(30) == [("opened", primary.pk), ("reminder", primary.pk)]
        assert events_at(119) == [("opened", primary.pk), ("reminder", primary.pk)]
        assert events_at(120) == [("opened", primary.pk), ("reminder", primary.pk), ("secondary", secondary.pk)]
        assert events_at(600) == events_at(120)  # each timer fires once
    assert len(server.requests) == 3


@pytest.mark.django_db
def test_timers_stay_quiet_once_the_escalation_is_acknowledged(signed):
    with fakes.webhook() as server:
        signed(server)
        signed(server, tier="secondary")
        escalation = escalate()
        outbox_send_due()
        escalation_acknowledge(escalation=escalation, actor="op")
        fired = escalation_timers_run(now=escalation.created_at + timedelta(hours=5))
        outbox_send_due(now=escalation.created_at + timedelta(hours=5))
    assert fired == {"reminded": 0, "sent_to_secondary": 0}
    assert [r["headers"]["x-agency-event"] for r in server.requests] == ["escalation.opened"]


@pytest.mark.django_db
def test_a_reminder_queued_before_the_acknowledgement_is_cancelled_not_sent(signed):
    with fakes.webhook() as server:
        signed(server)
        escalation = escalate()
        outbox_send_due()
        escalation_timers_run(now=escalation.created_at + timedelta(minutes=31))
        escalation_acknowledge(escalation=escalation, actor="op")  # before the relay got to the reminder
        assert outbox_send_due(now=escalation.created_at + timedelta(minutes=31))["cancelled"] == 1
    assert len(server.requests) == 1
    assert Notification.objects.get(event="reminder").status == "cancelled"


@pytest.mark.django_db
def test_a_repeat_returns_the_live_escalation_of_its_own_task_and_reason():
    first_task, second_task = TaskFactory(status="processing"), TaskFactory(status="processing")
    opened = {
        (task.pk, reason): escalation_open(task=task, reason=reason, actor="pipeline")[0].pk
        for task in (first_task, second_task)
        for reason in ("attempts_exhausted", "integration")
    }
    for task in (first_task, second_task):
        for reason in ("attempts_exhausted", "integration"):
            again, created = escalation_open(task=task, reason=reason, actor="pipeline")
            assert not created and again.pk == opened[(task.pk, reason)]


@pytest.mark.django_db
def test_it_acknowledges_only_the_escalation_asked_for_and_stamps_the_time():
    first, second = escalate(), escalate()
    before = timezone.now()
    escalation_acknowledge(escalation=first, actor="op")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("acknowledged", "open")
    assert before <= first.acknowledged_at <= timezone.now() and second.acknowledged_at is None
    assert EscalationEvent.objects.get(escalation=first, kind="acknowledged").actor == "op"
    assert not EscalationEvent.objects.filter(escalation=second, kind="acknowledged").exists()


@pytest.mark.django_db
def test_it_resolves_only_the_escalation_asked_for_and_stamps_the_time():
    first, second = escalate(), escalate()
    before = timezone.now()
    escalation_resolve(escalation=first, resolution="dismissed", actor="op", note="duplicate order")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("resolved", "open")
    assert before <= first.resolved_at <= timezone.now() and second.resolved_at is None
    assert second.live_key == "attempts_exhausted" and second.resolution == ""
    event = EscalationEvent.objects.get(escalation=first, kind="resolved")
    assert (event.actor, event.detail) == ("op", "duplicate order")


@pytest.mark.django_db
def test_it_requeues_only_the_dead_message_asked_for_due_at_once(settings):
    ChannelFactory()
    first, second = escalate().notifications.get(), escalate().notifications.get()
    later = timezone.now() + timedelta(days=3)
    Notification.objects.update(status="dead", attempts=5, next_attempt_at=later)
    now = timezone.now()
    assert notification_requeue(notification=first, now=now)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.attempts, first.next_attempt_at) == ("pending", 0, now)
    assert (second.status, second.attempts, second.next_attempt_at) == ("dead", 5, later)
    assert not notification_requeue(notification=first, now=now)  # pending already: nothing to do


@pytest.mark.django_db
def test_a_requeue_without_a_time_is_due_now():
    ChannelFactory()
    message = escalate().notifications.get()
    Notification.objects.update(status="dead", next_attempt_at=timezone.now() + timedelta(days=3))
    before = timezone.now()
    notification_requeue(notification=message)
    message.refresh_from_db()
    assert before <= message.next_attempt_at <= timezone.now()


@pytest.mark.django_db
def test_it_assigns_and_unassigns_with_the_names_in_the_history(django_user_model):
    alice = django_user_model.objects.create_user(username="alice")
    escalation, other = escalate(), escalate()
    escalation_assign(escalation=escalation, assignee=alice, actor="op")
    assert (escalation.assignee, Escalation.objects.get(pk=other.pk).assignee) == (alice, None)
    escalation_assign(escalation=escalation, assignee=None, actor="op")
    assert escalation.assignee is None
    history = EscalationEvent.objects.filter(escalation=escalation, kind="assigned").order_by("id")
    assert [(e.actor, e.detail) for e in history] == [("op", "to alice"), ("op", "to nobody")]


@pytest.mark.django_db
def test_it_refuses_to_reassign_a_resolved_escalation(django_user_model):
    alice = django_user_model.objects.create_user(username="alice")
    escalation = escalate()
    escalation_resolve(escalation=escalation, resolution="dismissed", actor="op")
    with pytest.raises(EscalationConflict) as refused:
        escalation_assign(escalation=escalation, assignee=alice, actor="op")
    assert (str(refused.value), refused.value.existing_id) == (
        "A resolved escalation cannot be reassigned.",
        escalation.pk,
    )
    assert Escalation.objects.get(pk=escalation.pk).assignee is None
    assert not EscalationEvent.objects.filter(escalation=escalation, kind="assigned").exists()


@pytest.mark.django_db
def test_it_refuses_an_unknown_resolution_or_a_deliverable_with_another_resolution():
    escalation = escalate()
    with pytest.raises(ValueError) as unknown:
        escalation_resolve(escalation=escalation, resolution="ignored", actor="op")
    assert str(unknown.value) == "Unknown resolution 'ignored'"
    with pytest.raises(ValueError) as misplaced:
        escalation_resolve(escalation=escalation, resolution="failed", actor="op", deliverable=File(io.BytesIO(b"x")))
    assert str(misplaced.value) == "A deliverable goes with the completed_manually resolution only."
    assert Escalation.objects.get(pk=escalation.pk).status == "open"


@pytest.mark.django_db
def test_a_deliverable_without_a_content_type_is_stored_as_octet_stream(media_root):
    escalation = escalate()
    upload = File(io.BytesIO(b"%PDF-1.7 by hand"), name="report.pdf")  # a plain file: no content_type
    escalation_resolve(escalation=escalation, resolution="completed_manually", actor="op", deliverable=upload)
    deliverable = escalation.task.deliverables.get()
    assert (deliverable.name, deliverable.content_type) == ("report.pdf", "application/octet-stream")


@pytest.mark.django_db
def test_a_resolution_without_a_note_records_none():
    escalation = escalate()
    escalation_resolve(escalation=escalation, resolution="dismissed", actor="op")
    assert EscalationEvent.objects.get(escalation=escalation, kind="resolved").detail == ""


@pytest.mark.django_db
def test_timers_remind_every_late_escalation_with_its_own_event_due_at_the_timers_clock(settings):
    settings.ESCALATION_REMIND_AFTER_MINUTES = 30
    ChannelFactory()
    first, second = escalate(), escalate()
    now = max(first.created_at, second.created_at) + timedelta(minutes=31)
    assert escalation_timers_run(now=now) == {"reminded": 2, "sent_to_secondary": 0}
    for escalation in (first, second):
        escalation.refresh_from_db()
        assert escalation.reminded_at == now
        event = EscalationEvent.objects.get(escalation=escalation, kind="reminder")
        assert event.actor == "timer"
        assert escalation.notifications.get(event="reminder").next_attempt_at == now


@pytest.mark.django_db
def test_one_timer_run_handles_at_most_ten_batches(settings):
    settings.NOTIFY_BATCH_SIZE, settings.ESCALATION_REMIND_AFTER_MINUTES = 1, 30
    ChannelFactory()
    for _ in range(11):
        escalate()
    later = timezone.now() + timedelta(minutes=31)
    assert escalation_timers_run(now=later)["reminded"] == 10
    assert escalation_timers_run(now=later)["reminded"] == 1


@pytest.mark.django_db
def test_the_relay_fires_the_timers_by_default_on_its_own_clock_and_reports_each_row(signed, settings):
    settings.ESCALATION_REMIND_AFTER_MINUTES = 30
    with fakes.webhook() as server:
        signed(server)
        escalation = escalate()
        later = escalation.created_at + timedelta(minutes=31)
        seen = []
        counts = notifications_relay(now=later, on_row=seen.append)
    assert (counts["reminded"], counts["sent_to_secondary"], counts["sent"]) == (1, 0, 2)
    assert seen == ["sent", "sent"]  # the opening message and the reminder, sent by this run
    assert [r["headers"]["x-agency-event"] for r in server.requests] == ["escalation.opened", "escalation.reminder"]


@pytest.mark.django_db
def test_the_relay_without_timers_only_sends_what_is_due_at_its_clock(signed, settings):
    settings.ESCALATION_REMIND_AFTER_MINUTES = 30
    with fakes.webhook() as server:
        signed(server)
        escalation = escalate()
        Notification.objects.update(next_attempt_at=escalation.created_at + timedelta(minutes=40))
        assert notifications_relay(now=escalation.created_at + timedelta(minutes=39), timers=False)["sent"] == 0
        counts = notifications_relay(now=escalation.created_at + timedelta(minutes=41), timers=False)
    assert {k: counts[k] for k in ("reminded", "sent_to_secondary", "sent")} == {
        "reminded": 0,
        "sent_to_secondary": 0,
        "sent": 1,
    }
    assert not Notification.objects.filter(event="reminder").exists() and len(server.requests) == 1
