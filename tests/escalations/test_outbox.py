"""The notification outbox: routing, transactions, the relay's claims and retries, timers (docs/escalations.md)."""

import os
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from agency.outbox import relaying
from escalations.models import Escalation, Notification
from escalations.outbox import (
    notification_send,
    outbox_claim,
    outbox_purge,
    outbox_send_due,
)
from escalations.services import (
    escalation_acknowledge,
    escalation_open,
    escalation_resolve,
    escalation_timers_run,
    notification_requeue,
)
from tests.agency.factories import TaskFactory
from tests.concurrency import run_at_once
from tests.escalations import fakes
from tests.escalations.factories import ChannelFactory, escalate
from tests.tracing.http_server import RecordingServer


def deliveries(server: RecordingServer) -> list[str]:
    return [request["headers"]["x-agency-delivery"] for request in server.requests]


@pytest.mark.django_db
def test_it_queues_one_row_per_primary_channel_that_takes_the_severity(signed):
    with fakes.webhook() as server:
        everything = signed(server)
        high_only = signed(server, severities=["high"])
        signed(server, active=False)
        signed(server, tier="secondary")
        normal = escalate(high_value=False)
        high = escalate(high_value=True)
    rows = set(Notification.objects.values_list("escalation_id", "channel_id", "event", "status"))
    assert rows == {
        (normal.pk, everything.pk, "opened", "pending"),
        (high.pk, everything.pk, "opened", "pending"),
        (high.pk, high_only.pk, "opened", "pending"),
    }


@pytest.mark.django_db(transaction=True)
def test_nothing_is_sent_when_the_surrounding_transaction_rolls_back(signed):
    with fakes.webhook() as server:
        signed(server)
        task = TaskFactory(status="processing")
        with pytest.raises(RuntimeError), transaction.atomic():
            escalation_open(task=task, reason="attempts_exhausted", actor="pipeline")
            raise RuntimeError("the caller fails after escalating")
        assert outbox_send_due() == dict.fromkeys(("sent", "retry_later", "dead", "cancelled", "lost"), 0)
    assert not server.requests
    assert not Escalation.objects.exists() and not Notification.objects.exists()
    task.refresh_from_db()
    assert task.status == "processing"


@pytest.mark.django_db(transaction=True)
def test_it_relays_right_after_commit_without_waiting_for_beat(signed):
    """The embedded default (eager Celery): the commit's kick runs the relay in-process."""
    with fakes.webhook() as server:
        signed(server)
        escalate()
    assert len(server.requests) == 1
    assert Notification.objects.get().status == "sent"


@pytest.mark.django_db
def test_it_retries_a_failing_channel_with_exponential_backoff_then_marks_it_dead(signed, settings):
    settings.NOTIFY_MAX_ATTEMPTS, settings.NOTIFY_BACKOFF_BASE_SECONDS = 4, 30
    with fakes.webhook(status=500) as server:
        signed(server)
        escalate()
        clock = timezone.now()
        waits = []
        for _ in range(3):
            assert outbox_send_due(now=clock)["retry_later"] == 1
            row = Notification.objects.get()
            waits.append((row.next_attempt_at - clock).total_seconds())
            assert outbox_send_due(now=row.next_attempt_at - timedelta(seconds=1))["retry_later"] == 0  # not yet due
            clock = row.next_attempt_at
        assert outbox_send_due(now=clock)["dead"] == 1
        assert outbox_send_due(now=clock + timedelta(days=1)) == dict.fromkeys(
            ("sent", "retry_later", "dead", "cancelled", "lost"), 0
        )
    assert waits == [30, 60, 120]
    row = Notification.objects.get()
    assert (row.status, row.attempts, len(server.requests)) == ("dead", 4, 4)
    assert "HTTP 500" in row.last_error


@pytest.mark.django_db
def test_a_requeued_dead_row_goes_out_once_the_channel_works(signed, settings):
    settings.NOTIFY_MAX_ATTEMPTS = 1
    with fakes.webhook(status=503) as broken:
        channel = signed(broken)
        escalate()
        assert outbox_send_due()["dead"] == 1
    with fakes.webhook() as fixed:
        channel.target = fixed.url
        channel.save()
        assert notification_requeue(notification=Notification.objects.get())
        assert outbox_send_due()["sent"] == 1
    assert len(fixed.requests) == 1


@pytest.mark.django_db
def test_a_later_message_never_overtakes_the_one_that_opened_the_escalation(signed):
    with fakes.webhook(status=500) as server:
        signed(server)
        escalation = escalate()
        outbox_send_due()  # "opened" fails and waits for its retry
        at = escalation.created_at + timedelta(minutes=31)
        escalation_timers_run(now=at)  # the reminder is due at once…
        server.respond = fakes.webhook_receiver(204)
        token, rows = outbox_claim(now=at, limit=10)
        assert [row.event for row in rows] == ["opened"]  # …but waits while "opened" is unsent
        assert notification_send(notification=rows[0], token=token, now=at) == "sent"
        assert outbox_send_due(now=at)["sent"] == 1
    events = [r["headers"]["x-agency-event"] for r in server.requests]
    assert events == ["escalation.opened", "escalation.opened", "escalation.reminder"]  # failed try, then in order


@pytest.mark.django_db
def test_an_escalation_resolved_before_its_messages_went_out_is_not_announced_at_all(signed):
    with fakes.webhook(status=500) as server:
        signed(server)
        escalation = escalate()
        outbox_send_due()  # "opened" fails and waits for its retry
        server.respond = fakes.webhook_receiver(204)
        escalation_resolve(escalation=escalation, resolution="dismissed", actor="op")
        outbox_send_due(now=timezone.now() + timedelta(hours=1))
    # Nothing to act on and nothing to close: neither message goes out.
    assert set(Notification.objects.values_list("event", "status")) == {("opened", "cancelled"),
                                                                        ("resolved", "cancelled")}  # fmt: skip
    assert len(server.requests) == 1  # the one failed try


@pytest.mark.django_db
def test_a_reminder_claimed_before_the_acknowledgement_is_still_not_sent(signed):
    """The relay re-reads the escalation just before sending, not when it claimed the batch."""
    with fakes.webhook() as server:
        signed(server)
        escalation = escalate()
        outbox_send_due()
        at = escalation.created_at + timedelta(minutes=31)
        escalation_timers_run(now=at)
        token, [reminder] = outbox_claim(now=at, limit=10)
        escalation_acknowledge(escalation=escalation, actor="op")  # while the batch is in flight
        assert notification_send(notification=reminder, token=token, now=at) == "cancelled"
    assert [r["headers"]["x-agency-event"] for r in server.requests] == ["escalation.opened"]


@pytest.mark.django_db
def test_a_row_whose_sending_crashes_is_retried_then_dead_and_never_blocks_the_others(signed, settings):
    """A payload this code cannot format (a bug, an old format) fails like a channel error, row by row."""
    settings.NOTIFY_MAX_ATTEMPTS, settings.NOTIFY_BATCH_SIZE = 2, 2
    with fakes.webhook() as server:
        signed(server)
        broken, *_ = [escalate() for _ in range(3)]
        Notification.objects.filter(escalation=broken).update(payload={})
        first = outbox_send_due()
        second = outbox_send_due(now=timezone.now() + timedelta(hours=1))
    assert (first["sent"], first["retry_later"], second["dead"]) == (2, 1, 1)
    assert len(server.requests) == 2
    row = Notification.objects.get(escalation=broken)
    assert row.status == "dead" and "KeyError" in row.last_error


@pytest.mark.django_db
def test_an_email_address_django_cannot_parse_is_dead_at_once(smtp_inbox):
    ChannelFactory(kind="email", target="ops@example.com; boss@example.com")  # saved past the form's check
    escalate()
    assert outbox_send_due()["dead"] == 1
    assert "Invalid address" in Notification.objects.get().last_error
    assert not smtp_inbox.messages


@pytest.mark.django_db
def test_a_row_claimed_by_relays_that_keep_dying_is_given_up(signed, settings):
    settings.NOTIFY_MAX_ATTEMPTS, settings.NOTIFY_CLAIM_SECONDS = 2, 60
    with fakes.webhook() as server:
        signed(server)
        escalate()
        clock = timezone.now()
        for _ in range(2):  # claimed, then the relay dies mid-send, twice
            outbox_claim(now=clock, limit=1)
            clock += timedelta(seconds=61)
        assert outbox_send_due(now=clock)["dead"] == 1
    assert not server.requests
    assert "Gave up after 2 attempts" in Notification.objects.get().last_error


@pytest.mark.django_db
def test_a_row_held_by_a_relay_that_died_is_taken_over_after_its_lease_and_sent_once(signed, settings):
    settings.NOTIFY_CLAIM_SECONDS = 120
    with fakes.webhook() as server:
        signed(server)
        escalate()
        start = timezone.now()
        stale_token, [stale_row] = outbox_claim(now=start, limit=10)  # a relay claims, then hangs
        assert outbox_send_due(now=start + timedelta(seconds=60))["sent"] == 0  # still its lease
        assert outbox_send_due(now=start + timedelta(seconds=121))["sent"] == 1  # taken over
        # The hung relay wakes up: its claim is gone, so it sends nothing and changes nothing.
        assert notification_send(notification=stale_row, token=stale_token, now=start + timedelta(seconds=5)) == "lost"
    row = Notification.objects.get()
    assert (row.status, row.attempts, len(server.requests)) == ("sent", 2, 1)


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_a_row_being_sent_late_in_a_long_batch_is_not_taken_over_by_another_relay(signed, settings):
    """The claim is renewed right before each send: a second relay that comes along after the
    batch's first lease ran out, while the row is on the wire, must find it taken."""
    settings.NOTIFY_CLAIM_SECONDS = 600
    second_relay: list[dict] = []

    def respond(request):
        if not second_relay:  # mid-send: another relay runs, 601 s after the first one claimed
            try:
                second_relay.append(outbox_send_due(now=start + timedelta(seconds=601)))
            finally:
                connection.close()
        return 204, {}, b""

    with RecordingServer(respond=respond) as server:
        signed(server)
        with relaying():  # no kick: this test drives the relays itself
            escalate()
        start = timezone.now()
        token, [row] = outbox_claim(now=start, limit=10)
        # The first relay reaches this row late in its batch, 590 s after it claimed it.
        assert notification_send(notification=row, token=token, now=start + timedelta(seconds=590)) == "sent"
    assert second_relay[0]["sent"] == 0
    assert len(server.requests) == 1


@pytest.mark.django_db
def test_the_command_relays_due_rows_and_reports_what_happened(signed):
    with fakes.webhook() as server:
        signed(server)
        for _ in range(3):
            escalate()
        out = StringIO()
        call_command("relay_notifications", "--limit", "2", stdout=out)
        assert "Due notifications: 3." in out.getvalue() and "Relayed: 2 sent" in out.getvalue()
        out = StringIO()
        call_command("relay_notifications", stdout=out)
        assert "Relayed: 1 sent" in out.getvalue()
        call_command("relay_notifications", stdout=StringIO())  # again: nothing left, nothing resent
    assert len(set(deliveries(server))) == len(server.requests) == 3


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_two_relays_at_once_send_each_of_200_rows_exactly_once(signed, settings):
    settings.NOTIFY_BATCH_SIZE = 1  # a claim per row: the relays contend on every row (a naive claim double-sends here)
    with fakes.webhook(status=503) as server:  # down while the rows are written: they all wait
        signed(server)
        signed(server)
        for _ in range(100):
            escalate()
        assert Notification.objects.filter(status="pending").count() == 200
        server.requests.clear()
        server.respond = fakes.webhook_receiver(204)  # back up
        later = timezone.now() + timedelta(hours=1)
        results = run_at_once(2, lambda i: outbox_send_due(now=later))
    sent = [result["sent"] for result in results]
    assert sum(sent) == 200 and all(sent), sent  # both relays did part of the work
    assert len(server.requests) == 200
    assert len(set(deliveries(server))) == 200
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}


@pytest.mark.django_db
def test_it_forgets_long_done_notifications_but_keeps_dead_ones(signed, settings):
    settings.NOTIFY_KEEP_DAYS = 90
    with fakes.webhook() as server:
        signed(server)
        _sent, cancelled, dead, recent = (escalate() for _ in range(4))
        outbox_send_due()
    Notification.objects.filter(escalation=cancelled).update(status="cancelled")
    Notification.objects.filter(escalation=dead).update(status="dead")
    old = timezone.now() - timedelta(days=91)
    Notification.objects.exclude(escalation=recent).update(created_at=old)
    assert outbox_purge() == 2
    assert set(Notification.objects.values_list("escalation_id", flat=True)) == {dead.pk, recent.pk}


def _held() -> tuple[int, int]:
    """Open file descriptors and live threads of this process."""
    return len(os.listdir("/proc/self/fd")), threading.active_count()


@pytest.mark.single_pass  # process resources, whatever the database
@pytest.mark.django_db
def test_the_relay_holds_no_more_descriptors_or_threads_after_1000_rows_than_after_10(signed):
    """No leaks (docs/escalations.md): connections to channels are pooled and closed, never left behind."""
    with fakes.webhook() as server:
        for _ in range(10):
            signed(server)
        for _ in range(101):
            escalate()
        assert outbox_send_due(limit=10)["sent"] == 10
        after_ten = _held()
        assert outbox_send_due()["sent"] == 1000
        after_thousand = _held()
    assert len(set(deliveries(server))) == 1010
    assert after_thousand <= after_ten, (after_ten, after_thousand)
