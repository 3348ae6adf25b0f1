"""Loopback stand-ins for Freelancer.com's REST API v0.1 and Upwork's GraphQL job search.

Both are real HTTP servers on 127.0.0.1 (HTTP/1.1 keep-alive; each answer goes out as one write with
Nagle's algorithm off, see tests/agency/fake_openai.py for why), usable as context managers. They
record every request, refuse one without the right token with a 401 JSON error, and answer in the
marketplace's wire format; `replies` keeps what they answered.

`FakeFreelancer` keeps state behind a lock: projects (`project_add`), bids (`bids`, by id; each
names its bidder) and every placement body it received (`placements`, refused ones included). Like
the real marketplace it refuses a second bid by the same bidder on the same project, retracted or
not. The refusal's body is the real one, as Freelancer's API users report it::

    {"status": "error", "message": "You have already bid on that project.",
     "error_code": "ProjectExceptionCodes.DUPLICATE_BID"}

Its HTTP status is not documented anywhere we could read; we answer 400 (their validation
refusals are 4xx) and the adapter looks only at `error_code`. The other error codes here
(unknown project or bid, a bid for someone else, a bad bid body) are ours.

Fault switches, for the crash tests: `fail_next(n, status=500, path=None)` answers the next n
requests (only those for `path`, if given) with that status before doing anything; `hold_bids`
(a `threading.Event`): while set, a placement is recorded, `bid_held` is set, and the answer waits
until `hold_bids` is cleared; `drop_after_record`: a placement is recorded, then the connection is
closed without an answer; `garble_after_record`: a placement is recorded, then answered 200 with
an HTML page (a proxy's, say) instead of JSON.
"""

import base64
import json
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

FREELANCER_TOKEN = "freelancer-test-token"
UPWORK_TOKEN = "upwork-test-token"
DUPLICATE_BID = "ProjectExceptionCodes.DUPLICATE_BID"
NOT_AUTHENTICATED = "AuthExceptionCodes.NOT_AUTHENTICATED"

PROJECTS_ACTIVE = "/api/projects/0.1/projects/active/"
SELF = "/api/users/0.1/self/"
BIDS = "/api/projects/0.1/bids/"
HOLD_LIMIT_SECONDS = 30  # a held answer never outlives a test that forgot to release it


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    json: Any

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None  # JSON, or bytes sent as they are (an HTML page)
    drop: bool = False  # close the connection without answering


@dataclass
class _Failure:
    status: int
    path: str | None = None


class LoopbackServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 that records each request and answers `answer(request)`."""

    def __init__(self):
        self.requests: list[Request] = []
        self.replies: list[Reply] = []  # in the order they were sent
        self._failures: list[_Failure] = []
        self._lock = threading.RLock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _handle(self):
                fake._write(self, fake._reply(fake._read(self)))

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, *args):
                """Silence the per-request lines http.server writes to stderr."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, n: int = 1, status: int = 500, path: str | None = None) -> None:
        with self._lock:
            self._failures += [_Failure(status, path) for _ in range(n)]

    def answer(self, request: Request) -> Reply:
        raise NotImplementedError

    def error(self, status: int, message: str, code: str = "") -> Reply:
        raise NotImplementedError

    def _reply(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            failure = next((f for f in self._failures if f.path in (None, request.path)), None)
            if failure is not None:
                self._failures.remove(failure)
        reply = self.error(failure.status, f"fake failure {failure.status}") if failure else self.answer(request)
        with self._lock:
            self.replies.append(reply)
        return reply

    @staticmethod
    def _read(handler: BaseHTTPRequestHandler) -> Request:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        parts = urlsplit(handler.path)
        return Request(
            method=handler.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in handler.headers.items()},
            json=body,
        )

    @staticmethod
    def _write(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.drop:
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        raw = isinstance(reply.body, bytes)
        body = reply.body if raw else json.dumps(reply.body).encode()
        head = (
            f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}\r\n"
            f"Content-Type: {'text/html' if raw else 'application/json'}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            handler.wfile.write(head.encode() + body)
        except OSError:  # the client went away while its answer was held
            handler.close_connection = True


# --- Freelancer.com --------------------------------------------------------------------------------


class FakeFreelancer(LoopbackServer):
    def __init__(self, token: str = FREELANCER_TOKEN, user_id: int = 4242):
        self.token = token
        self.user_id = user_id
        self.projects: dict[int, dict] = {}
        self.bids: dict[int, dict] = {}
        self.hold_bids = threading.Event()
        self.bid_held = threading.Event()
        self.drop_after_record = False
        self.garble_after_record = False
        self._next_id = 1000
        super().__init__()

    @property
    def placements(self) -> list[Any]:
        """Every bid body received, whatever the answer was."""
        with self._lock:
            return [r.json for r in self.requests if r.method == "POST" and r.path == BIDS]

    def close(self) -> None:
        self.hold_bids.clear()
        super().close()

    # Seeding -------------------------------------------------------------------------------------

    def project_add(
        self,
        title: str = "A project",
        description: str = "Some work to do.",
        *,
        project_id: int | None = None,
        seo_url: str | None = None,
        currency: str = "USD",
        budget: tuple[float | None, float | None] = (100, 200),
        jobs: tuple[str, ...] = (),
        time_submitted: int = 1_767_225_600,  # 2026-01-01 00:00:00 UTC
        kind: str = "fixed",
    ) -> dict:
        with self._lock:
            project_id = project_id if project_id is not None else self._new_id()
            project = {
                "id": project_id,
                "title": title,
                "description": description,
                "preview_description": description[:100],
                "seo_url": seo_url or f"python/project-{project_id}",
                "currency": {"id": 1, "code": currency, "sign": "$"},
                "budget": {"minimum": budget[0], "maximum": budget[1]},
                "jobs": [{"id": n, "name": name} for n, name in enumerate(jobs, start=1)],
                "time_submitted": time_submitted,
                "type": kind,
                "status": "active",
            }
            self.projects[project_id] = project
            return project

    def bid_seed(
        self, project_id: int, amount: float, *, award_status: str | None = None, retracted: bool = False
    ) -> int:
        """A bid of ours already on the marketplace (made by hand, or before a crash)."""
        with self._lock:
            return self._bid_record(
                {"project_id": project_id, "bidder_id": self.user_id, "amount": amount, "description": ""},
                key="",
                award_status=award_status,
                retracted=retracted,
            )["id"]

    # Answers -------------------------------------------------------------------------------------

    def error(self, status: int, message: str, code: str = "") -> Reply:
        return Reply(status, {"status": "error", "message": message, "error_code": code or None, "request_id": "f"})

    def answer(self, request: Request) -> Reply:
        if request.headers.get("freelancer-oauth-v1") != self.token:
            return self.error(401, "You must be logged in to perform this request.", NOT_AUTHENTICATED)
        route = (request.method, request.path)
        if route == ("GET", PROJECTS_ACTIVE):
            return self._projects_search(request)
        if route == ("GET", SELF):
            return _success({"id": self.user_id, "username": "agency", "role": "freelancer"})
        if route == ("POST", BIDS):
            return self._bid_place(request)
        if route == ("GET", BIDS):
            return self._bids_list(request)
        if request.method == "PUT" and request.path.startswith(BIDS):
            return self._bid_action(request)
        return self.error(404, f"No route {request.method} {request.path}.", "NotFoundException")

    def _projects_search(self, request: Request) -> Reply:
        words = (request.arg("query") or "").lower()
        limit, offset = int(request.arg("limit", "10")), int(request.arg("offset", "0"))
        with self._lock:
            matching = [p for p in self.projects.values() if words in f"{p['title']} {p['description']}".lower()]
        matching.sort(key=lambda p: (-p["time_submitted"], -p["id"]))
        page = [_project_public(p, request) for p in matching[offset : offset + limit]]
        return _success({"projects": page, "total_count": len(matching)})

    def _bid_place(self, request: Request) -> Reply:
        body = request.json if isinstance(request.json, dict) else {}
        refusal = _bid_refusal(body)
        if refusal:
            return self.error(400, refusal, "ProjectExceptionCodes.INVALID_BID")
        with self._lock:
            if body["project_id"] not in self.projects:
                return self.error(404, "Project not found.", "ProjectExceptionCodes.PROJECT_NOT_FOUND")
            if body["bidder_id"] != self.user_id:
                return self.error(403, "You cannot bid for another user.", "ProjectExceptionCodes.NOT_YOUR_BID")
            if any((b["bidder_id"], b["project_id"]) == (self.user_id, body["project_id"]) for b in self.bids.values()):
                return self.error(400, "You have already bid on that project.", DUPLICATE_BID)
            bid = self._bid_record(body, key=request.headers.get("idempotency-key", ""))
        if self.drop_after_record:
            return Reply(drop=True)
        if self.garble_after_record:
            return Reply(200, b"<html><body>Please wait...</body></html>")
        if self.hold_bids.is_set():
            self.bid_held.set()
            deadline = time.monotonic() + HOLD_LIMIT_SECONDS
            while self.hold_bids.is_set() and time.monotonic() < deadline:
                time.sleep(0.005)
        return _success(_bid_public(bid))

    def _bids_list(self, request: Request) -> Reply:
        bidders = {int(b) for b in request.query.get("bidders[]", [])}
        limit, offset = int(request.arg("limit", "10")), int(request.arg("offset", "0"))
        with self._lock:
            mine = [b for b in sorted(self.bids.values(), key=lambda b: b["id"]) if b["bidder_id"] in bidders]
            page = [_bid_public(b) for b in mine[offset : offset + limit]]
        return _success({"bids": page, "total_count": len(mine)})

    def _bid_action(self, request: Request) -> Reply:
        bid_id = request.path[len(BIDS) :].strip("/")
        action = request.arg("action")
        if action != "retract":
            return self.error(400, f"Unsupported action {action!r}.", "ProjectExceptionCodes.INVALID_ACTION")
        with self._lock:
            bid = self.bids.get(int(bid_id)) if bid_id.isdigit() else None
            if bid is None:
                return self.error(404, "Bid not found.", "ProjectExceptionCodes.BID_NOT_FOUND")
            if bid["bidder_id"] != self.user_id:
                return self.error(403, "Not your bid.", "ProjectExceptionCodes.NOT_YOUR_BID")
            bid["retracted"] = True  # retracting twice changes nothing and is no error
            return _success(_bid_public(bid))

    def _bid_record(self, body: dict, *, key: str, award_status: str | None = None, retracted: bool = False) -> dict:
        bid = {
            "id": self._new_id(),
            "bidder_id": body["bidder_id"],
            "project_id": body["project_id"],
            "amount": body["amount"],
            "period": body.get("period", 3),
            "milestone_percentage": body.get("milestone_percentage", 100),
            "description": body["description"],
            "award_status": award_status,
            "retracted": retracted,
            "frontend_bid_status": "active",
            "time_submitted": int(time.time()),
            "idempotency_key": key,
        }
        self.bids[bid["id"]] = bid
        return bid

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id


def _success(result: dict) -> Reply:
    return Reply(200, {"status": "success", "result": result, "request_id": "f"})


def _project_public(project: dict, request: Request) -> dict:
    """As the API shows a project: the full description and the jobs only when asked for."""
    shown = {key: value for key, value in project.items() if key not in ("description", "jobs")}
    if request.arg("full_description") == "true":
        shown["description"] = project["description"]
    if request.arg("job_details") == "true":
        shown["jobs"] = project["jobs"]
    return shown


def _bid_public(bid: dict) -> dict:
    return {key: value for key, value in bid.items() if key != "idempotency_key"}


def _bid_refusal(body: dict) -> str:
    for name, kind in (("project_id", int), ("bidder_id", int), ("amount", int | float), ("period", int)):
        if isinstance(body.get(name), bool) or not isinstance(body.get(name), kind):
            return f"{name} is missing or not a number."
    if body["amount"] <= 0 or body["period"] <= 0:
        return "amount and period must be positive."
    if not isinstance(body.get("description"), str) or not body["description"].strip():
        return "A bid needs a description."
    if not 0 <= body.get("milestone_percentage", 100) <= 100:
        return "milestone_percentage must be between 0 and 100."
    return ""


# --- Upwork ----------------------------------------------------------------------------------------


@dataclass
class FakeUpworkJob:
    """One job posting as Upwork's `marketplaceJobPostingsSearch` node shows it."""

    id: str
    title: str = "A job"
    description: str = "Some work to do."
    ciphertext: str = ""
    amount: str = "0.0"  # fixed price in dollars; "0.0" for hourly jobs
    currency: str = "USD"
    hourly_min: str | None = None
    hourly_max: str | None = None
    skills: tuple[str, ...] = ()
    created: str = "2026-01-01T00:00:00.000Z"

    def node(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "ciphertext": self.ciphertext or f"~01{self.id}",
            "amount": {"rawValue": self.amount, "currency": self.currency, "displayValue": f"${self.amount}"},
            "hourlyBudgetMin": {"rawValue": self.hourly_min} if self.hourly_min is not None else None,
            "hourlyBudgetMax": {"rawValue": self.hourly_max} if self.hourly_max is not None else None,
            "skills": [{"name": name} for name in self.skills],
            "createdDateTime": self.created,
        }


class FakeUpwork(LoopbackServer):
    """`POST /graphql` answering `marketplaceJobPostingsSearch` a page at a time, with opaque cursors.

    `graphql_errors(message)` makes the next search answer HTTP 200 with `errors`, as GraphQL does.
    """

    def __init__(self, token: str = UPWORK_TOKEN):
        self.token = token
        self.jobs: list[FakeUpworkJob] = []
        self._errors: list[str] = []
        super().__init__()

    def graphql_errors(self, message: str) -> None:
        with self._lock:
            self._errors.append(message)

    def error(self, status: int, message: str, code: str = "") -> Reply:
        return Reply(status, {"errors": [{"message": message, "extensions": {"code": code or str(status)}}]})

    def answer(self, request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return self.error(401, "Authentication failed.", "UNAUTHENTICATED")
        if (request.method, request.path) != ("POST", "/graphql"):
            return self.error(404, f"No route {request.method} {request.path}.")
        query = request.json.get("query", "") if isinstance(request.json, dict) else ""
        if "marketplaceJobPostingsSearch" not in query:
            return Reply(200, {"data": None, "errors": [{"message": "Unknown or missing query."}]})
        with self._lock:
            if self._errors:
                return Reply(200, {"data": None, "errors": [{"message": self._errors.pop(0)}]})
            jobs = list(self.jobs)
        return Reply(200, {"data": {"marketplaceJobPostingsSearch": _upwork_page(jobs, request.json)}})


def _upwork_page(jobs: list[FakeUpworkJob], body: dict) -> dict:
    # The fake cannot parse GraphQL, so it takes the filter from whichever variable holds one.
    variables = body.get("variables") or {}
    search = next((v for v in variables.values() if isinstance(v, dict) and "pagination_eq" in v), {})
    words = str(search.get("searchExpression_eq") or "").lower()
    pagination = search.get("pagination_eq") or {}
    start = _cursor_offset(pagination.get("after"))
    first = int(pagination.get("first") or 10)
    matching = [job for job in jobs if words in f"{job.title} {job.description}".lower()]
    page = matching[start : start + first]
    end = start + len(page)
    return {
        "totalCount": len(matching),
        "edges": [{"node": job.node(), "cursor": _cursor(start + n + 1)} for n, job in enumerate(page)],
        "pageInfo": {"hasNextPage": end < len(matching), "endCursor": _cursor(end) if page else None},
    }


def _cursor(offset: int) -> str:
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def _cursor_offset(cursor: str | None) -> int:
    return int(base64.b64decode(cursor).decode().split(":")[1]) if cursor else 0
