"""Local stand-ins for the notification services, answering in their documented wire formats.

Each is a `RecordingServer` with a `respond` function that checks a request
the way the real service does and answers what it would: Slack's bare
"ok", Telegram's `{"ok": …}` envelope (refusing HTML it cannot parse),
PagerDuty's 202 `{"status": "success", …}`, a webhook receiver that checks
the HMAC signature. E-mail goes over real SMTP to an aiosmtpd server (the `smtp_inbox` fixture in conftest).
"""

import hashlib
import hmac
import json
import re
from html.parser import HTMLParser

from tests.tracing.http_server import Answer, RecordingServer

TELEGRAM_TOKEN = "123456:test-bot-token"
WEBHOOK_SECRET = "whsec-test"
PAGERDUTY_ROUTING_KEY = "R0UTINGKEY0123456789ABCDEFGHIJKL"  # 32 characters, as PagerDuty requires
TELEGRAM_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "tg-spoiler"}


def _json(status: int, body: dict, headers: dict | None = None) -> Answer:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


def slack(status: int = 200, text: str = "ok"):
    def respond(request: dict) -> Answer:
        try:
            message = json.loads(request["body"])
        except ValueError:
            return 400, {"Content-Type": "text/plain"}, b"invalid_payload"
        if status == 200 and not message.get("text") and not message.get("blocks"):
            return 400, {"Content-Type": "text/plain"}, b"no_text"
        return status, {"Content-Type": "text/plain"}, text.encode()

    return RecordingServer(respond=respond)


class _TelegramHTML(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.unsupported: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in TELEGRAM_TAGS:
            self.unsupported.append(tag)


def telegram(fail_with: Answer | None = None):
    def respond(request: dict) -> Answer:
        if request["path"] != f"/bot{TELEGRAM_TOKEN}/sendMessage":
            return _json(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        if fail_with is not None:
            return fail_with
        message = json.loads(request["body"])
        if message.get("parse_mode") == "HTML":
            parser = _TelegramHTML()
            parser.feed(message["text"])
            if parser.unsupported:
                description = f'Bad Request: can\'t parse entities: Unsupported start tag "{parser.unsupported[0]}"'
                return _json(400, {"ok": False, "error_code": 400, "description": description})
            # Every "&" must start one of the entities Telegram knows (its HTML-style docs).
            if re.search(r"&(?!(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);)", message["text"]):
                description = "Bad Request: can't parse entities: Character '&' is reserved"
                return _json(400, {"ok": False, "error_code": 400, "description": description})
        if len(message["text"]) > 4096:
            return _json(400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"})
        chat = {"id": int(message["chat_id"]), "type": "group"}
        return _json(200, {"ok": True, "result": {"message_id": len(request), "chat": chat, "text": message["text"]}})

    return RecordingServer(respond=respond)


def telegram_too_many_requests(retry_after: int) -> Answer:
    description = f"Too Many Requests: retry after {retry_after}"
    body = {"ok": False, "error_code": 429, "description": description, "parameters": {"retry_after": retry_after}}
    return _json(429, body)


def webhook_signature_valid(request: dict, secret: str = WEBHOOK_SECRET) -> bool:
    """What a receiver does: recompute the HMAC over "<timestamp>." + raw body and compare in constant time."""
    timestamp = request["headers"]["x-agency-timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(request["headers"]["x-agency-signature"], f"sha256={expected}")


def webhook_receiver(status: int = 204):
    def respond(request: dict) -> Answer:
        if not webhook_signature_valid(request):
            return 401, {}, b""
        return status, {}, b""

    return respond


def webhook(status: int = 204):
    return RecordingServer(respond=webhook_receiver(status))


def pagerduty(status: int = 202):
    def respond(request: dict) -> Answer:
        event = json.loads(request["body"])
        errors = []
        if len(event.get("routing_key", "")) != 32:
            errors.append("'routing_key' must be 32 characters")
        if event.get("event_action") not in {"trigger", "acknowledge", "resolve"}:
            errors.append("'event_action' is invalid")
        if event.get("event_action") in {"acknowledge", "resolve"} and not event.get("dedup_key"):
            errors.append("'dedup_key' is required")
        if event.get("event_action") == "trigger":
            payload = event.get("payload") or {}
            if not payload.get("summary") or not payload.get("source"):
                errors.append("'payload.summary' and 'payload.source' are required")
            if payload.get("severity") not in {"critical", "error", "warning", "info"}:
                errors.append("'payload.severity' is invalid")
        if errors:
            return _json(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})
        if status != 202:
            return _json(status, {"status": "throttled" if status == 429 else "error", "message": "try again"})
        answer = {"status": "success", "message": "Event processed", "dedup_key": event.get("dedup_key", "")}
        return _json(202, answer)

    return RecordingServer(respond=respond)


def json_bodies(server: RecordingServer) -> list[dict]:
    return [json.loads(request["body"]) for request in server.requests]
