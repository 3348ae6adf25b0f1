"""A loopback server that answers like an OpenAI-compatible chat completions endpoint.

Answers are scripted: `server.then(ok(...), status(503), drop(), …)` queues what the next
requests get, in order; once the queue is empty every request gets `server.default`. Every
request is recorded (path, lower-cased headers, parsed JSON body).

Each answer goes out as one write on a socket with Nagle's algorithm off: headers written
apart from the body would wait for the client's delayed ACK (~40 ms on Linux) on every call.
"""

import collections
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}  # fmt: skip


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a slow or hung model)
    drop: bool = False  # close the connection without answering


def completion_body(text: str, tokens_in: int = 10, tokens_out: int = 5, cost: str | None = None) -> bytes:
    usage: dict = {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage,
    }
    raw = json.dumps(body)
    if cost is not None:  # written as the exact decimal text a provider sends, not through a float
        raw = raw[:-2] + f', "cost": {cost}}}}}'
    return raw.encode()


def ok(text: str = "Hello.", tokens_in: int = 10, tokens_out: int = 5, cost: str | None = None, delay: float = 0):
    return Answer(200, completion_body(text, tokens_in, tokens_out, cost), delay=delay)


def status(code: int, headers: dict | None = None, delay: float = 0) -> Answer:
    body = json.dumps({"error": {"message": f"fake error {code}", "type": "fake", "code": code}}).encode()
    return Answer(code, body, headers or {}, delay=delay)


def raw(body: bytes, code: int = 200) -> Answer:
    return Answer(code, body)


def drop() -> Answer:
    return Answer(drop=True)


class FakeOpenAI:
    def __init__(self):
        self.requests: list[dict] = []
        self.default = ok()
        self._script: collections.deque[Answer] = collections.deque()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                answer = fake._next()
                fake.requests.append(
                    {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "json": parsed}
                )
                if answer.delay:
                    time.sleep(answer.delay)
                if answer.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                head = [f"HTTP/1.1 {answer.status} {REASONS.get(answer.status, 'Status')}"]
                headers = {
                    "Content-Type": "application/json",
                    **answer.headers,
                    "Content-Length": str(len(answer.body)),
                }
                head += [f"{name}: {value}" for name, value in headers.items()]
                self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + answer.body)

            def log_message(self, *args):
                """Silence the per-request lines http.server writes to stderr."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def then(self, *answers: Answer) -> "FakeOpenAI":
        with self._lock:
            self._script.extend(answers)
        return self

    def _next(self) -> Answer:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


if __name__ == "__main__":
    # A server of its own process (bench/gateway_overhead.py): prints its URL, serves the default
    # answer until its standard input closes, so a benchmark's client never shares a GIL with it.
    import sys

    server = FakeOpenAI()
    print(server.url, flush=True)
    sys.stdin.read()
    server.close()
