"""Sending one outbox message through one channel, in that channel's wire format (docs/escalations.md).

Each sender turns the stored payload into the channel's message, escaping
user content (task titles, details, errors, notes) for the channel's markup,
and raises `SendFailed` when the message did not get through: `permanent`
for answers that no retry can fix (a bad URL, a refused token), otherwise
the relay tries again later, no sooner than `retry_after` when the channel
said so. Every request carries the current trace context (`traceparent`),
which the relay has continued from the transaction that wrote the row.
"""

import hashlib
import hmac
import html
import json
import os
import re
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import httpx
from django.conf import settings
from django.utils import timezone
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from agency.outbox import SendFailed, mail_send, short
from escalations.models import NotificationChannel
from escalations.targets import target_problem
from tracing.context import trace_carrier

Kind = NotificationChannel.Kind

# Answers that mean the configuration is wrong, not that the channel is busy.
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 410, 413, 422})
PAGERDUTY_SEVERITY = {"high": "critical", "normal": "warning"}
PAGERDUTY_SUMMARY_MAX = 1024
# Characters of one user-supplied field in a message: four of them, escaped, plus the fixed
# lines stay within Slack's 3000-character section and Telegram's 4096-character message.
FIELD_MAX = 600


_client: httpx.Client | None = None


def http_client() -> httpx.Client:
    """One client per process for every HTTP channel: pooled connections, explicit timeouts."""
    global _client
    if _client is None:
        _client = httpx.Client(timeout=settings.NOTIFY_HTTP_TIMEOUT_SECONDS, follow_redirects=False)
    return _client


def send(channel: NotificationChannel, payload: dict, *, delivery_id: str) -> None:
    """Deliver `payload` through `channel`, or raise `SendFailed`."""
    SENDERS[channel.kind](channel, payload, delivery_id)


# --- The message text -----------------------------------------------------------------

HEADLINES = {
    "opened": "Escalation #{id}: task #{task_id} needs an operator",
    "reminder": "Reminder: escalation #{id} (task #{task_id}) is still unacknowledged",
    "secondary": "Unacknowledged escalation #{id} (task #{task_id}) handed to you",
    "acknowledged": "Escalation #{id} (task #{task_id}) acknowledged",
    "resolved": "Escalation #{id} (task #{task_id}) resolved: {resolution}",
}


def headline(payload: dict) -> str:
    """The one-line summary; made of ids and fixed words only, so it needs no escaping."""
    return HEADLINES[payload["event"]].format(
        id=payload["escalation_id"], task_id=payload["task_id"], resolution=payload.get("resolution", "")
    )


def clip(text: str, limit: int = FIELD_MAX) -> str:
    """Shorten escaped text to `limit` characters without cutting an entity (`&amp;`) in half."""
    if len(text) <= limit:
        return text
    return re.sub(r"&[#\w]*$", "", text[: limit - 1]) + "…"


def message_lines(payload: dict, escape: Callable[[str], str] = str) -> list[str]:
    """The body as lines, with every user-supplied value escaped, then clipped to `FIELD_MAX`.

    Clipping each field (rather than the whole message) keeps the markup valid
    and the link line intact within every channel's message size limit.
    """
    lines = [
        f"Task: {clip(escape(payload['task_title']))}",
        f"Reason: {payload['reason']} · severity {payload['severity']} · attempts {payload.get('attempts') or 0}",
    ]
    for label, key in (("Detail", "detail"), ("Last error", "error"), ("Note", "note")):
        if payload.get(key):
            lines.append(f"{label}: {clip(escape(str(payload[key])))}")
    lines.append(f"Open: {payload['url']}")
    return lines


def slack_escape(text: str) -> str:
    """Slack mrkdwn: &, < and > are control characters (links, mentions like <!channel>)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def telegram_escape(text: str) -> str:
    """Telegram's HTML parse mode accepts &lt; &gt; &amp; &quot; only."""
    return html.escape(text, quote=False)


# --- Senders --------------------------------------------------------------------------


def _secret(channel: NotificationChannel) -> str:
    """The channel's own secret: from `NOTIFY_SECRET_<SLUG>`, never from a variable someone named."""
    name = channel.secret_variable
    value = os.environ.get(name, "")
    if not value:
        # Retried: an operator sets the variable (the deploy check names it) and the messages go out.
        raise SendFailed(f"The environment variable {name} is not set.")
    return value


def _target(channel: NotificationChannel) -> str:
    """The channel's URL, checked (host resolved) just before sending: refused targets are dead at once."""
    problem = target_problem(channel.target)
    if problem:
        raise SendFailed(f"Target refused: {problem}", permanent=True)
    return channel.target


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - timezone.now()).total_seconds())
    except (TypeError, ValueError):
        return None


def _json(response: httpx.Response) -> dict:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _post(url: str, *, headers: dict[str, str] | None = None, **kwargs) -> httpx.Response:
    # No client span from the httpx instrumentation: it would record the full URL, and Slack
    # webhook URLs and Telegram bot URLs carry their secret in the path. The relay's own span
    # ("notify <kind>") stands for the call; we propagate the trace context ourselves.
    try:
        with suppress_http_instrumentation():
            response = http_client().post(url, headers={**trace_carrier(), **(headers or {})}, **kwargs)
    except httpx.InvalidURL as exc:
        raise SendFailed("Invalid URL.", permanent=True) from exc
    except httpx.HTTPError as exc:
        # The type says what went wrong (timeout, refused); its text may quote the URL and its secret.
        raise SendFailed(f"{type(exc).__name__} while sending.") from exc
    trace.get_current_span().set_attribute("http.response.status_code", response.status_code)
    if not response.is_success:
        # Only the status is kept: the remote body is the remote's to say, not ours to store.
        raise SendFailed(
            f"HTTP {response.status_code} {short(response.reason_phrase, 40)}".rstrip(),
            permanent=response.status_code in PERMANENT_STATUSES,
            retry_after=_retry_after(response),
            response=response,
        )
    return response


def email_send(channel: NotificationChannel, payload: dict, delivery_id: str) -> None:
    recipients = channel.email_recipients()
    if not recipients:
        raise SendFailed("The channel has no recipients.", permanent=True)
    subject = re.sub(r"\s+", " ", f"[{payload['severity']}] {headline(payload)}")
    mail_send(subject=subject, body="\n".join(message_lines(payload)) + "\n", to=recipients, delivery_id=delivery_id)


def slack_send(channel: NotificationChannel, payload: dict, delivery_id: str) -> None:
    url = _target(channel) if channel.target else _secret(channel)
    title = headline(payload)
    body = "\n".join(message_lines(payload, slack_escape))
    message = {
        "text": f"{title}\n{body}",  # the notification and fallback text
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
        ],
    }
    try:
        response = _post(url, json=message)
    except SendFailed as exc:
        # Slack explains a refusal with a bare code ("no_service", "invalid_token"): worth keeping.
        code = slack_error_code(exc.response.text) if exc.response is not None else ""
        if not code:
            raise
        raise SendFailed(f"{exc} ({code})", permanent=exc.permanent, retry_after=exc.retry_after) from None
    if response.text.strip() != "ok":  # Slack answers a bare "ok" when it posted the message
        raise SendFailed(f"Slack answered {slack_error_code(response.text) or 'something other than ok'}")


def slack_error_code(text: str) -> str:
    """Slack's error code in an answer body, if that is all the body is."""
    text = text.strip()
    return text if re.fullmatch(r"[a-z0-9_]{1,50}", text) else ""


def telegram_send(channel: NotificationChannel, payload: dict, delivery_id: str) -> None:
    token = _secret(channel)
    text = f"<b>{headline(payload)}</b>\n" + "\n".join(message_lines(payload, telegram_escape))
    url = f"{settings.TELEGRAM_API_BASE.rstrip('/')}/bot{token}/sendMessage"
    try:
        response = _post(
            url,
            json={
                "chat_id": channel.target,
                "text": text,
                "parse_mode": "HTML",
                "link_preview_options": {"is_disabled": True},
            },
        )
    except SendFailed as exc:
        # The bot token is part of the URL: keep it out of the stored error.
        retry_after = exc.retry_after
        if exc.response is not None and exc.response.status_code == 429:
            retry_after = _json(exc.response).get("parameters", {}).get("retry_after", retry_after)
        message = str(exc).replace(token, "<token>")
        raise SendFailed(message, permanent=exc.permanent, retry_after=retry_after) from None
    answer = _json(response)
    if not answer.get("ok"):
        raise SendFailed(f"Telegram: {short(answer.get('description', 'not ok'))}")


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` + HMAC-SHA256 over "<timestamp>." + body: what receivers recompute to verify."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def webhook_send(channel: NotificationChannel, payload: dict, delivery_id: str) -> None:
    secret = _secret(channel)
    body = json.dumps({"type": f"escalation.{payload['event']}", "delivery": delivery_id, "data": payload}).encode()
    timestamp = str(int(time.time()))
    _post(
        _target(channel),
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Agency-Event": f"escalation.{payload['event']}",
            "X-Agency-Delivery": delivery_id,
            "X-Agency-Timestamp": timestamp,
            "X-Agency-Signature": webhook_signature(secret, timestamp, body),
        },
    )


def pagerduty_send(channel: NotificationChannel, payload: dict, delivery_id: str) -> None:
    """Events API v2: trigger on opening and reminders, acknowledge, resolve; one `dedup_key` per episode."""
    action = {"acknowledged": "acknowledge", "resolved": "resolve"}.get(payload["event"], "trigger")
    event = {"routing_key": _secret(channel), "event_action": action, "dedup_key": payload["incident_key"]}
    if action == "trigger":
        event["payload"] = {
            "summary": f"{headline(payload)}: {payload['task_title']}"[:PAGERDUTY_SUMMARY_MAX],
            "source": "agency",
            "severity": PAGERDUTY_SEVERITY.get(payload["severity"], "warning"),
            "component": f"task-{payload['task_id']}",
            "class": payload["reason"],
            "custom_details": {k: payload.get(k) for k in ("detail", "error", "attempts", "reason")},
        }
        event["links"] = [{"href": payload["url"], "text": "Open in the operator inbox"}]
    response = _post(_target(channel) if channel.target else settings.PAGERDUTY_EVENTS_URL, json=event)
    answer = _json(response)
    if answer.get("status") != "success":
        raise SendFailed(f"PagerDuty: {short(answer.get('message', 'not a success'))}")


SENDERS: dict[str, Callable[[NotificationChannel, dict, str], None]] = {
    Kind.EMAIL: email_send,
    Kind.SLACK: slack_send,
    Kind.TELEGRAM: telegram_send,
    Kind.WEBHOOK: webhook_send,
    Kind.PAGERDUTY: pagerduty_send,
}
