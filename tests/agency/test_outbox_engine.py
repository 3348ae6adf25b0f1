"""The outbox engine's own rules (docs/architecture.md), through an outbox of test rows: what is kept
of an error, how long a failed row waits, what a dead row tells its outbox; and how mail is sent."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agency.outbox import Outbox, SendFailed, mail_send, outbox_send_due, short
from escalations.models import Notification
from tests.escalations.factories import ChannelFactory, escalate
from tests.processes import free_port


def test_short_keeps_one_printable_line_within_the_limit():
    assert short("HTTP 500:\n\tupstream\x00 down  ") == "HTTP 500: upstream down"
    assert short("a" * 120) == "a" * 120
    assert short("a" * 121) == "a" * 119 + "…"
    assert short("ab" * 10, 5) == "abab…"
    assert short(ValueError("no")) == "no"


def _rows(count: int = 1) -> list[Notification]:
    ChannelFactory()
    return [escalate().notifications.get() for _ in range(count)]


def _outbox(send, on_dead=None) -> Outbox:
    return Outbox(model=Notification, name="test_rows", send=send, span_name=lambda row: "test", on_dead=on_dead)


@pytest.mark.django_db
def test_a_failed_row_keeps_at_most_200_characters_of_its_error_and_waits_its_backoff(settings):
    settings.NOTIFY_BACKOFF_BASE_SECONDS, settings.NOTIFY_MAX_ATTEMPTS = 30, 5
    [row] = _rows()

    def send(_row):
        raise SendFailed("x" * 500)

    now = timezone.now()
    assert outbox_send_due(_outbox(send), now=now)["retry_later"] == 1
    row.refresh_from_db()
    assert (row.status, row.last_error, row.next_attempt_at) == (
        "pending",
        "x" * 199 + "…",
        now + timedelta(seconds=30),
    )
    assert (row.claim_token, row.claimed_until) == (None, None)


@pytest.mark.django_db
def test_a_remote_that_asks_for_a_longer_wait_is_given_it(settings):
    settings.NOTIFY_BACKOFF_BASE_SECONDS = 30
    [row] = _rows()

    def send(_row):
        raise SendFailed("HTTP 429", retry_after=90)

    now = timezone.now()
    outbox_send_due(_outbox(send), now=now)
    row.refresh_from_db()
    assert row.next_attempt_at == now + timedelta(seconds=90)


@pytest.mark.django_db
def test_a_dead_row_tells_its_outbox_why_once_and_only_for_itself():
    dead_rows = []
    doomed, fine = _rows(2)

    def send(row):
        if row.pk == doomed.pk:
            raise SendFailed("550 no such mailbox", permanent=True)

    counts = outbox_send_due(_outbox(send, on_dead=lambda row, error: dead_rows.append((row.pk, error))))
    assert (counts["dead"], counts["sent"]) == (1, 1)
    assert dead_rows == [(doomed.pk, "550 no such mailbox")]
    doomed.refresh_from_db()
    assert (doomed.status, doomed.last_error, doomed.claim_token) == ("dead", "550 no such mailbox", None)
    fine.refresh_from_db()
    assert fine.status == "sent"


def _mail(to: str) -> None:
    mail_send(subject="Hello", body="Hi.", to=[to], delivery_id="test-1")


@pytest.mark.parametrize(("domain", "final"), [("refused.example", True), ("syntax.example", True),
                                                ("greylist.example", False)])  # fmt: skip
def test_a_refused_recipient_is_final_only_for_a_5xx_answer(smtp_inbox, domain, final):
    with pytest.raises(SendFailed) as refused:
        _mail(f"someone@{domain}")
    assert refused.value.permanent is final
    assert str(refused.value).startswith("Recipients refused: {'someone@" + domain + "': (")


def test_a_mail_server_that_cannot_be_reached_is_a_failure_worth_retrying(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens there
    with pytest.raises(SendFailed) as failed:
        _mail("client@example.com")
    assert not failed.value.permanent
    assert str(failed.value).startswith("ConnectionRefusedError: ")


@pytest.mark.django_db
def test_only_pending_rows_that_are_due_are_ever_claimed():
    rows = _rows(4)
    for row, status in zip(rows, ("sent", "dead", "cancelled", "pending"), strict=True):
        Notification.objects.filter(pk=row.pk).update(status=status, next_attempt_at=timezone.now())
    sent = []
    counts = outbox_send_due(_outbox(lambda row: sent.append(row.pk)), now=timezone.now() + timedelta(days=1))
    assert (counts["sent"], sent) == (1, [rows[3].pk])


@pytest.mark.django_db
def test_the_row_due_first_goes_first():
    later, sooner = _rows(2)
    now = timezone.now()
    Notification.objects.filter(pk=later.pk).update(next_attempt_at=now - timedelta(minutes=1))
    Notification.objects.filter(pk=sooner.pk).update(next_attempt_at=now - timedelta(minutes=5))
    sent = []
    outbox_send_due(_outbox(lambda row: sent.append(row.pk)), now=now, limit=1)
    assert sent == [sooner.pk]


@pytest.mark.django_db
def test_a_row_sent_after_a_failure_is_stamped_and_forgets_the_error(settings):
    settings.NOTIFY_BACKOFF_BASE_SECONDS = 1
    [row] = _rows()
    attempts = []

    def send(_row):
        attempts.append(1)
        if len(attempts) == 1:
            raise SendFailed("HTTP 503")

    now = timezone.now()
    outbox_send_due(_outbox(send), now=now)
    before = timezone.now()
    outbox_send_due(_outbox(send), now=now + timedelta(seconds=5))
    row.refresh_from_db()
    assert (row.status, row.last_error, row.claim_token, row.claimed_until) == ("sent", "", None, None)
    assert before <= row.sent_at <= timezone.now()


@pytest.mark.django_db
def test_each_row_is_sent_inside_its_own_named_span(recorded_spans):
    [row] = _rows()
    outbox = Outbox(model=Notification, name="test_rows", send=lambda row: None, span_name=lambda row: f"test {row.pk}")
    outbox_send_due(outbox)
    [span] = [s for s in recorded_spans.get_finished_spans() if s.name == f"test {row.pk}"]
    assert span.attributes["agency.outbox_row"] == f"test_rows:{row.pk}"
