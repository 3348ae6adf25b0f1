"""The client's delivery e-mail goes through the outbox (docs/tasks.md): written with the completion,
sent over real SMTP by the relay, retried with backoff, and a dead one flags the task."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from agency.models import ClientEmail, DeliveryLink, Task
from agency.services.delivery import client_emails_relay, deliverable_add, delivery_email_enqueue, token_digest
from agency.services.tasks import task_transition
from tests.agency.factories import ClientFactory, TaskFactory
from tests.processes import free_port

pytestmark = pytest.mark.django_db


def _complete(email: str = "client@example.com") -> Task:
    task = TaskFactory(status="reviewing", client=ClientFactory(email=email))
    deliverable_add(task=task, name="report.csv", content=b"month,total\njan,10\n", content_type="text/csv")
    return task_transition(task=task, to="completed", actor="test")


def _link_in(message) -> str:
    body = message.content.decode()
    return next(word for word in body.split() if "/deliver/" in word)


def test_it_queues_the_email_in_the_completing_transaction_and_nothing_when_that_rolls_back():
    kept = _complete("kept@example.com")
    with pytest.raises(RuntimeError), transaction.atomic():
        _complete("lost@example.com")
        raise RuntimeError("the completion fails after the row was written")
    [email] = ClientEmail.objects.all()
    assert (email.task_id, email.to, email.kind, email.status) == (
        kept.pk,
        "kept@example.com",
        "delivery_link",
        "pending",
    )
    assert not DeliveryLink.objects.exists()  # no token exists before the e-mail is sent


def test_it_sends_a_working_link_over_smtp_with_the_trace(smtp_inbox, settings):
    settings.PUBLIC_BASE_URL = "http://agency.test"
    task, other = _complete("a@example.com"), _complete("b@example.com")
    assert client_emails_relay()["sent"] == 2
    [message] = [m for m in smtp_inbox.messages if m.rcpt_tos == ["a@example.com"]]
    url = _link_in(message)
    assert url.startswith(f"http://agency.test/deliver/{task.pk}/")
    assert b"traceparent: 00-" in message.content and b"X-Agency-Delivery: client-email-" in message.content
    link = DeliveryLink.objects.get(task=task)
    assert link.token_hash == token_digest(url.rstrip("/").rsplit("/", 1)[1]) and link.revoked_at is None
    assert Client().get(url.removeprefix("http://agency.test")).status_code == 200
    assert ClientEmail.objects.get(task=task).status == "sent" and ClientEmail.objects.get(task=other).link_id
    assert client_emails_relay()["sent"] == 0  # nothing twice


def test_a_failed_send_revokes_its_link_and_a_later_one_brings_a_new_link(smtp_inbox, settings):
    task = _complete()
    port = settings.EMAIL_PORT
    settings.EMAIL_PORT = free_port()  # the mail server is down
    started = timezone.now()
    assert client_emails_relay(now=started)["retry_later"] == 1
    email = ClientEmail.objects.get()
    assert email.status == "pending" and email.next_attempt_at >= started + timedelta(seconds=30)
    [dead_link] = DeliveryLink.objects.filter(task=task)
    assert dead_link.revoked_at is not None  # its token never reached anyone and never will work

    settings.EMAIL_PORT = port
    assert client_emails_relay(now=email.next_attempt_at)["sent"] == 1
    [message] = smtp_inbox.messages
    live = DeliveryLink.objects.get(task=task, revoked_at__isnull=True)
    assert live.pk != dead_link.pk and live.token_hash == token_digest(_link_in(message).rstrip("/").rsplit("/", 1)[1])
    assert not Task.objects.get(pk=task.pk).needs_operator


def test_a_refused_address_is_dead_at_once_and_flags_only_its_task(smtp_inbox):
    refused, fine = _complete("nobody@refused.example"), _complete("fine@example.com")
    counts = client_emails_relay()
    assert (counts["dead"], counts["sent"]) == (1, 1)
    refused, fine = Task.objects.get(pk=refused.pk), Task.objects.get(pk=fine.pk)
    assert refused.needs_operator and "The delivery e-mail to nobody@refused.example was not sent" in (
        refused.operator_note
    )
    assert not fine.needs_operator
    assert DeliveryLink.objects.get(task=refused).revoked_at is not None
    error = ClientEmail.objects.get(task=refused).last_error
    assert error.startswith("Recipients refused")
    assert f"was not sent ({error}); check the address" in refused.operator_note  # the operator sees why


def test_a_greylisted_address_is_tried_again_until_the_attempts_run_out(smtp_inbox, settings):
    settings.NOTIFY_MAX_ATTEMPTS = 2
    task = _complete("later@greylist.example")
    clock = timezone.now()
    assert client_emails_relay(now=clock)["retry_later"] == 1
    clock = ClientEmail.objects.get().next_attempt_at
    assert client_emails_relay(now=clock)["dead"] == 1
    assert Task.objects.get(pk=task.pk).needs_operator
    assert DeliveryLink.objects.filter(task=task, revoked_at__isnull=True).count() == 0


def test_a_link_sent_again_long_after_completion_runs_from_when_it_is_sent(smtp_inbox, settings):
    settings.DELIVERY_LINK_TTL_DAYS = 7
    task = _complete()
    client_emails_relay()
    first = DeliveryLink.objects.get(task=task)
    assert first.expires_at == Task.objects.get(pk=task.pk).completed_at + timedelta(days=7)
    Task.objects.filter(pk=task.pk).update(completed_at=timezone.now() - timedelta(days=8))  # long ago
    delivery_email_enqueue(task=Task.objects.get(pk=task.pk))  # an operator's "new link"
    client_emails_relay()
    again = DeliveryLink.objects.exclude(pk=first.pk).get(task=task)
    assert again.expires_at > timezone.now() + timedelta(days=6)
    assert Client().get(_link_in(smtp_inbox.messages[-1]).removeprefix("http://127.0.0.1:8000")).status_code == 200


def test_the_link_and_subject_are_right_whatever_the_base_urls_trailing_slash(smtp_inbox, settings):
    settings.PUBLIC_BASE_URL = "https://agency.example/"
    task = _complete("a@example.com")
    assert client_emails_relay()["sent"] == 1
    [message] = smtp_inbox.messages
    assert _link_in(message).startswith(f"https://agency.example/deliver/{task.pk}/")
    assert f"Subject: Your delivery is ready: {task.title}".encode() in message.content


def test_an_email_for_a_task_no_longer_completed_is_cancelled_unsent(smtp_inbox):
    task = _complete("a@example.com")
    Task.objects.filter(pk=task.pk).update(status="failed")  # changed by hand before the relay ran
    assert client_emails_relay()["cancelled"] == 1
    assert smtp_inbox.messages == [] and not DeliveryLink.objects.filter(task=task).exists()
    assert ClientEmail.objects.get(task=task).last_error == "The task is failed, not completed."


def test_a_relay_run_sends_at_most_its_limit_and_reports_each_row(smtp_inbox):
    for address in ("a@example.com", "b@example.com"):
        _complete(address)
    seen = []
    assert client_emails_relay(limit=1, on_row=seen.append)["sent"] == 1
    assert seen == ["sent"] and len(smtp_inbox.messages) == 1
    assert client_emails_relay()["sent"] == 1


def test_a_relay_run_forgets_e_mails_sent_long_before_its_clock(smtp_inbox, settings):
    _complete("a@example.com")
    assert client_emails_relay()["sent"] == 1
    assert client_emails_relay()["purged"] == 0
    later = timezone.now() + timedelta(days=settings.NOTIFY_KEEP_DAYS + 1)
    assert client_emails_relay(now=later)["purged"] == 1
    assert not ClientEmail.objects.exists()
