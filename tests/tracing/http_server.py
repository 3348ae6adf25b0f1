"""A loopback HTTP server that records what it receives, for outbound-call tests."""

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (status, headers, body) for a recorded request
Answer = tuple[int, dict[str, str], bytes]


class RecordingServer:
    """Records every request; answers `status` + JSON `body`, or whatever `respond(request)` returns."""

    def __init__(self, status: int = 200, body: dict | None = None, respond: Callable[[dict], Answer] | None = None):
        self.requests: list[dict] = []
        self.status = status
        self.body = json.dumps(body or {"ok": True}).encode()
        self.respond = respond
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real services do: pooled connections show up

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                request = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": self.rfile.read(length) if length else b"",
                }
                recorder.requests.append(request)
                if recorder.respond is not None:
                    status, headers, body = recorder.respond(request)
                else:
                    status, headers, body = recorder.status, {"Content-Type": "application/json"}, recorder.body
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                """Silence the per-request lines http.server writes to stderr."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


def plain_get(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, dict, bytes]:
    """GET with the standard library: unlike httpx it is not instrumented, so
    the `traceparent` a test sets is the one the server receives."""
    return _plain("GET", url, headers, timeout)


def plain_post(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, dict, bytes]:
    return _plain("POST", url, headers, timeout, data=b"")


def _plain(method, url, headers, timeout, data=None) -> tuple[int, dict, bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers=headers or {}, method=method, data=data)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
