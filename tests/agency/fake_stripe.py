"""A loopback server that answers like Stripe's API for Checkout Sessions, and Stripe-style webhook signing."""

import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class FakeStripe:
    """`POST /v1/checkout/sessions` → a session object; `fail_with` makes it answer an error instead.

    Like Stripe, a repeated `Idempotency-Key` gets the first session back. `on_request(form)`, if
    set, runs in the server's thread before it answers (to look at the world while Stripe is asked).
    """

    def __init__(self):
        self.requests: list[dict] = []
        self.fail_with: int | None = None
        self.on_request = None
        self.sessions: dict[str, dict] = {}  # by Idempotency-Key
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                form = {k: v[0] for k, v in parse_qs(body).items()}
                fake.requests.append({"path": self.path, "form": form, "headers": dict(self.headers.items())})
                if fake.on_request is not None:
                    fake.on_request(form)
                if fake.fail_with:
                    self._answer(fake.fail_with, {"error": {"type": "api_error", "message": "Stripe is down"}})
                    return
                key = self.headers.get("Idempotency-Key", "")
                if key in fake.sessions:
                    self._answer(200, fake.sessions[key])
                    return
                session_id = f"cs_test_{uuid.uuid4().hex}"
                fake.sessions[key] = session = {
                    "id": session_id,
                    "object": "checkout.session",
                    "url": f"https://checkout.stripe.test/c/pay/{session_id}",
                    "amount_total": int(form["line_items[0][price_data][unit_amount]"]),
                    "currency": form["line_items[0][price_data][currency]"],
                    "payment_status": "unpaid",
                    "status": "open",
                    "client_reference_id": form.get("client_reference_id"),
                    "metadata": {"task_id": form.get("metadata[task_id]")},
                }
                self._answer(200, session)

            def _answer(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{uuid.uuid4().hex[:12]}")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                """Silence the per-request lines http.server writes to stderr."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header as Stripe computes it: HMAC-SHA256 of "timestamp.payload"."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def session_event(event_type: str, *, task, session_id=None, payment_status="paid", amount=None, currency=None) -> dict:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": event_type,
        "data": {
            "object": {
                "id": session_id or task.stripe_session_id,
                "object": "checkout.session",
                "payment_status": payment_status,
                "amount_total": task.price_cents if amount is None else amount,
                "currency": (currency or task.currency).lower(),
                "client_reference_id": str(task.pk),
                "metadata": {"task_id": str(task.pk)},
            }
        },
    }
