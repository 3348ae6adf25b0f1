"""Each notification channel against a local server speaking its wire format (docs/escalations.md).

Every test goes the whole way: `escalation_open` writes the outbox rows, the
relay sends them, and the local server sees what the real service would.
"""

import email
import json
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from escalations.checks import channel_secrets_check
from escalations.models import Notification
from escalations.outbox import outbox_send_due
from escalations.services import (
    escalation_acknowledge,
    escalation_open,
    escalation_resolve,
    notification_requeue,
)
from tests.agency.factories import TaskFactory
from tests.escalations import fakes
from tests.escalations.factories import ChannelFactory
from tests.tracing.http_server import RecordingServer
from tests.tracing.test_traceparent import TRACEPARENT_RE
from tracing.context import trace_started

pytestmark = pytest.mark.django_db

NASTY_TITLE = "Fix <!channel> & <script>alert(1)</script> <https://evil.example|click>"


def escalate(title: str = "Reconcile the ledger", high_value: bool = False, reason: str = "attempts_exhausted"):
    task = TaskFactory(status="processing", title=title, is_high_value=high_value, attempts=3, last_error="boom")
    with trace_started("test open"):
        escalation, _ = escalation_open(task=task, reason=reason, actor="pipeline", detail="Tried 3 times")
    return escalation


def relay(now=None) -> dict:
    with trace_started("test relay"):  # a trace of its own: sending must continue the stored one instead
        return outbox_send_due(now=now)


def only_row() -> Notification:
    [row] = Notification.objects.all()
    return row


def test_it_emails_operators_over_smtp_with_the_escalations_trace(smtp_inbox):
    ChannelFactory(kind="email", target="ops@example.com, lead@example.com")
    escalation = escalate(title="Q3 books <draft>")
    assert relay()["sent"] == 1
    [envelope] = smtp_inbox.messages
    assert sorted(envelope.rcpt_tos) == ["lead@example.com", "ops@example.com"]
    message = email.message_from_bytes(envelope.content)
    assert f"Escalation #{escalation.pk}" in message["Subject"]
    body = message.get_payload(decode=True).decode()
    assert "Task: Q3 books <draft>" in body and "Detail: Tried 3 times" in body and "Last error: boom" in body
    assert message["X-Agency-Delivery"] == str(only_row().pk)
    assert TRACEPARENT_RE.match(message["traceparent"]).group(1) == escalation.trace_id != ""


def test_it_marks_an_email_dead_when_the_server_refuses_every_recipient(smtp_inbox):
    ChannelFactory(kind="email", target="nobody@refused.example")
    escalate()
    assert relay()["dead"] == 1
    row = only_row()
    assert (row.status, row.attempts) == ("dead", 1)
    assert "refused" in row.last_error.lower()


def test_it_retries_an_email_the_server_greylisted(smtp_inbox):
    ChannelFactory(kind="email", target="ops@greylist.example")
    escalate()
    assert relay()["retry_later"] == 1
    row = only_row()
    assert row.status == "pending" and "450" in row.last_error


def test_it_posts_to_slack_with_user_content_escaped_for_mrkdwn():
    with fakes.slack() as server:
        ChannelFactory(kind="slack", target=f"{server.url}/services/T000/B000/XXXX")
        escalation = escalate(title=NASTY_TITLE)
        assert relay()["sent"] == 1
    [message] = fakes.json_bodies(server)
    assert server.requests[0]["path"] == "/services/T000/B000/XXXX"
    section = message["blocks"][1]["text"]["text"]
    for text in (message["text"], section):
        assert "&lt;!channel&gt; &amp; &lt;script&gt;" in text and "&lt;https://evil.example|click&gt;" in text
        assert "<!channel>" not in text and "<https://" not in text
    assert message["blocks"][0]["text"]["text"].startswith(f"Escalation #{escalation.pk}")
    assert TRACEPARENT_RE.match(server.requests[0]["headers"]["traceparent"]).group(1) == escalation.trace_id


def test_it_reads_the_slack_webhook_url_from_the_named_variable(monkeypatch):
    with fakes.slack() as server:
        monkeypatch.setenv("NOTIFY_SECRET_TEST_SLACK", f"{server.url}/services/secret")
        ChannelFactory(kind="slack", target="", slug="test_slack")
        escalate()
        assert relay()["sent"] == 1
    assert server.requests[0]["path"] == "/services/secret"


def test_it_gives_up_on_a_slack_webhook_that_no_longer_exists():
    with fakes.slack(status=404, text="no_service") as server:
        ChannelFactory(kind="slack", target=server.url)
        escalate()
        assert relay()["dead"] == 1
    row = only_row()
    assert row.attempts == 1 and "no_service" in row.last_error


@pytest.fixture
def telegram_channel(settings, monkeypatch):
    def make(server):
        settings.TELEGRAM_API_BASE = server.url
        monkeypatch.setenv("NOTIFY_SECRET_TEST_TELEGRAM", fakes.TELEGRAM_TOKEN)
        return ChannelFactory(kind="telegram", target="-1001234567890", slug="test_telegram")

    return make


def test_it_sends_telegram_html_the_bot_api_can_parse(telegram_channel):
    with fakes.telegram() as server:
        telegram_channel(server)
        escalation = escalate(title=NASTY_TITLE)
        assert relay()["sent"] == 1
    [message] = fakes.json_bodies(server)
    assert message["chat_id"] == "-1001234567890" and message["parse_mode"] == "HTML"
    assert message["text"].startswith(f"<b>Escalation #{escalation.pk}")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message["text"] and "<script>" not in message["text"]


def test_it_clips_long_user_content_without_breaking_entities_or_losing_the_link(telegram_channel):
    with fakes.telegram() as server:
        telegram_channel(server)
        task = TaskFactory(status="processing", title="T", attempts=3, last_error="<module> & " * 900)
        escalation, _ = escalation_open(task=task, reason="attempts_exhausted", actor="pipeline", detail="&" * 5000)
        assert relay()["sent"] == 1  # the fake answers 400 to a broken entity or a text over 4096
    [message] = fakes.json_bodies(server)
    assert message["text"].endswith(f"/admin/escalations/escalation/{escalation.pk}/change/")
    assert "Last error: &lt;module&gt; &amp;" in message["text"]


def test_the_fake_telegram_refuses_unescaped_html_as_the_real_one_does(telegram_channel):
    """Guards the test above: unescaped user HTML would have been refused, not silently accepted."""
    with fakes.telegram() as server:
        response = httpx.post(
            f"{server.url}/bot{fakes.TELEGRAM_TOKEN}/sendMessage",
            json={"chat_id": "1", "text": "<b>x</b> <script>alert(1)</script>", "parse_mode": "HTML"},
        )
    assert response.status_code == 400 and "Unsupported start tag" in response.json()["description"]
    with fakes.telegram() as server:
        response = httpx.post(
            f"{server.url}/bot{fakes.TELEGRAM_TOKEN}/sendMessage",
            json={"chat_id": "1", "text": "a &am", "parse_mode": "HTML"},
        )
    assert response.status_code == 400 and "reserved" in response.json()["description"]


def test_a_channel_reads_only_its_own_secret_variable(monkeypatch):
    """Neither Django's key nor another channel's secret can be made to reach a channel's target."""
    monkeypatch.setenv("DJANGO_SECRET_KEY", "the-real-secret")
    monkeypatch.setenv("NOTIFY_SECRET_PAGER", "the-pagers-routing-key")
    monkeypatch.delenv("NOTIFY_SECRET_HOOK", raising=False)
    with fakes.webhook() as server:
        ChannelFactory(kind="webhook", target=server.url, slug="hook")
        escalate()
        assert relay()["retry_later"] == 1
    assert not server.requests
    error = only_row().last_error
    assert error == "The environment variable NOTIFY_SECRET_HOOK is not set."
    assert "the-real-secret" not in error and "the-pagers-routing-key" not in error


def test_it_keeps_the_status_of_a_failed_send_but_not_the_remote_body(signed):
    body = "<html>Internal error: db password is hunter2 … </html>\r\n" * 20
    with RecordingServer(respond=lambda request: (500, {"Content-Type": "text/html"}, body.encode())) as server:
        signed(server)
        escalate()
        assert relay()["retry_later"] == 1
    assert only_row().last_error == "HTTP 500 Internal Server Error"


def test_it_refuses_at_send_time_a_target_that_now_reaches_a_private_address(signed, settings):
    with fakes.webhook() as server:
        signed(server)  # saved while local targets were allowed
        settings.NOTIFY_ALLOW_PRIVATE_TARGETS = False
        escalate()
        assert relay()["dead"] == 1
    assert not server.requests
    assert only_row().last_error.startswith("Target refused: 127.0.0.1 is a private, loopback or reserved address")


def test_it_waits_as_long_as_telegram_asks_and_keeps_the_token_out_of_errors(telegram_channel):
    with fakes.telegram(fail_with=fakes.telegram_too_many_requests(90)) as server:
        telegram_channel(server)
        escalate()
        before = timezone.now()
        assert relay()["retry_later"] == 1
    row = only_row()
    assert row.status == "pending" and row.next_attempt_at >= before + timedelta(seconds=90)
    assert "Too Many Requests" in row.last_error and fakes.TELEGRAM_TOKEN not in row.last_error


def test_it_gives_up_on_a_refused_telegram_token_without_storing_it(telegram_channel, monkeypatch):
    with fakes.telegram() as server:
        telegram_channel(server)
        monkeypatch.setenv("NOTIFY_SECRET_TEST_TELEGRAM", "999:wrong-token")
        escalate()
        assert relay()["dead"] == 1
    assert "999:wrong-token" not in only_row().last_error and "401" in only_row().last_error


def test_it_signs_webhooks_over_timestamp_and_body(monkeypatch):
    monkeypatch.setenv("NOTIFY_SECRET_TEST_WEBHOOK", fakes.WEBHOOK_SECRET)
    with fakes.webhook() as server:
        ChannelFactory(kind="webhook", target=f"{server.url}/hooks/agency", slug="test_webhook")
        escalation = escalate(title=NASTY_TITLE)
        assert relay()["sent"] == 1
    [request] = server.requests
    assert fakes.webhook_signature_valid(request)
    body = json.loads(request["body"])
    assert body["type"] == "escalation.opened" == request["headers"]["x-agency-event"]
    assert body["data"]["task_title"] == NASTY_TITLE  # JSON carries it verbatim
    assert body["data"]["escalation_id"] == escalation.pk
    assert request["headers"]["x-agency-delivery"] == str(only_row().pk) == body["delivery"]


def test_a_webhook_signed_with_another_secret_is_refused_and_not_retried(monkeypatch):
    monkeypatch.setenv("NOTIFY_SECRET_TEST_WEBHOOK", "not-the-receivers-secret")
    with fakes.webhook() as server:
        ChannelFactory(kind="webhook", target=server.url, slug="test_webhook")
        escalate()
        assert relay()["dead"] == 1
    assert len(server.requests) == 1 and "HTTP 401" in only_row().last_error


def test_a_channel_whose_secret_is_not_set_waits_for_it_and_is_named_by_the_deploy_check(monkeypatch):
    monkeypatch.delenv("NOTIFY_SECRET_TEST_UNSET", raising=False)
    with fakes.webhook() as server:
        ChannelFactory(name="ops hook", kind="webhook", target=server.url, slug="test_unset")
        mail = ChannelFactory(name="mail", kind="email", target="ops@example.com", slug="mail")  # needs no secret
        warnings = channel_secrets_check(None, databases=["default"])
        assert [w.id for w in warnings] == ["escalations.W001"]
        assert "NOTIFY_SECRET_TEST_UNSET" in warnings[0].msg and "ops hook" in warnings[0].msg
        mail.delete()  # only the webhook is told, below
        escalate()
        assert relay()["retry_later"] == 1
        assert "NOTIFY_SECRET_TEST_UNSET" in only_row().last_error
        monkeypatch.setenv("NOTIFY_SECRET_TEST_UNSET", fakes.WEBHOOK_SECRET)
        assert channel_secrets_check(None, databases=["default"]) == []
        assert relay(now=only_row().next_attempt_at)["sent"] == 1
    [request] = server.requests
    assert fakes.webhook_signature_valid(request)


@pytest.fixture
def pagerduty_server(settings, monkeypatch):
    monkeypatch.setenv("NOTIFY_SECRET_TEST_PD", fakes.PAGERDUTY_ROUTING_KEY)
    with fakes.pagerduty() as server:
        settings.PAGERDUTY_EVENTS_URL = f"{server.url}/v2/enqueue"
        ChannelFactory(kind="pagerduty", target="", slug="test_pd", severities=["high"])
        yield server


def test_pagerduty_trigger_acknowledge_and_resolve_share_the_episodes_dedup_key(pagerduty_server):
    escalation = escalate(high_value=True)
    relay()
    escalation_acknowledge(escalation=escalation, actor="op")
    relay()
    escalation_resolve(escalation=escalation, resolution="retried", actor="op")
    relay()
    events = fakes.json_bodies(pagerduty_server)
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {escalation.incident_key}
    assert events[0]["payload"]["severity"] == "critical"
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}


def test_pagerduty_gets_a_new_dedup_key_for_a_new_episode(pagerduty_server):
    first = escalate(high_value=True, reason="high_value_failure")
    relay()
    escalation_resolve(escalation=first, resolution="retried", actor="op")
    second, _ = escalation_open(task=first.task, reason="high_value_failure", actor="pipeline")
    relay()
    events = [(e["event_action"], e["dedup_key"]) for e in fakes.json_bodies(pagerduty_server)]
    assert first.incident_key != second.incident_key
    assert events == [
        ("trigger", first.incident_key),
        ("resolve", first.incident_key),
        ("trigger", second.incident_key),
    ]


def test_pagerduty_is_never_triggered_for_an_escalation_resolved_while_it_was_unreachable(pagerduty_server, settings):
    """A trigger that went dead, requeued after the resolve went out, would open an incident nobody closes."""
    escalation = escalate(high_value=True)
    pagerduty_server.respond, working = (lambda request: (500, {}, b"")), pagerduty_server.respond
    relay()  # the trigger fails and waits
    escalation_resolve(escalation=escalation, resolution="dismissed", actor="op")
    pagerduty_server.respond = working
    with trace_started("later"):
        outbox_send_due(now=timezone.now() + timedelta(hours=1))
    opened = Notification.objects.get(event="opened")
    notification_requeue(notification=opened)  # an operator's "Retry now" on whatever it finds
    outbox_send_due(now=timezone.now() + timedelta(hours=2))
    assert [e["event_action"] for e in fakes.json_bodies(pagerduty_server)[1:]] == []
    assert set(Notification.objects.values_list("event", "status")) == {("opened", "cancelled"),
                                                                        ("resolved", "cancelled")}  # fmt: skip


def test_pagerduty_is_told_only_about_the_severities_routed_to_it(pagerduty_server):
    escalate(high_value=False)
    assert relay()["sent"] == 0
    assert not pagerduty_server.requests
