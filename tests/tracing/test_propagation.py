"""Trace ids on log lines, on errors and on outbound calls (docs/tracing.md)."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import Client

from agency.cycle import CYCLE_STEPS
from agency.models import ApiKey
from tests.tracing.http_server import RecordingServer, plain_get
from tests.tracing.test_traceparent import TRACEPARENT_RE


def _traceparent() -> tuple[str, str]:
    trace_id = uuid.uuid4().hex
    return trace_id, f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"


@pytest.mark.django_db(transaction=True)
@pytest.mark.urls("tests.tracing.urls")
def test_it_keeps_each_concurrent_requests_lines_apart(live_server, log_lines):
    """50 requests in flight at once: every line names its own request's trace and request id.

    Each request carries its trace id in its path too (`marker`), so a line
    whose `trace_id` differs from its marker came from cross-talk; the view
    logs twice with a pause in between, so the requests interleave.
    """
    log_lines()  # drop what came before

    def call(_):
        trace_id, header = _traceparent()
        status, headers, _ = plain_get(f"{live_server.url}/test/log/{trace_id}", headers={"traceparent": header})
        assert status == 200
        return trace_id, headers["X-Request-ID"]

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = dict(pool.map(call, range(50)))
    assert len(answers) == 50

    lines = [line for line in log_lines() if line.get("event") in {"in_view", "in_view_again", "request_finished"}]
    assert len(lines) == 150
    for line in lines:
        marker = line.get("marker") or line["request"].rsplit("/", 1)[-1]
        assert line["trace_id"] == marker, line
        assert line["request_id"] == answers[marker], line
    in_flight = peak = 0
    for line in lines:  # in the order they were written
        in_flight += {"in_view": 1, "in_view_again": -1}.get(line["event"], 0)
        peak = max(peak, in_flight)
    assert peak > 1, "the requests never overlapped, so nothing was proven"

    _, headers, _ = plain_get(f"{live_server.url}/healthz")
    fresh = TRACEPARENT_RE.match(headers["traceparent"]).group(1)
    assert fresh not in answers
    finished = [line for line in log_lines() if line.get("event") == "request_finished"]
    assert [(line["trace_id"], line["request_id"]) for line in finished] == [(fresh, headers["X-Request-ID"])]


@pytest.mark.django_db
@pytest.mark.urls("tests.tracing.urls")
def test_it_answers_a_crash_with_json_and_the_logged_trace_id(log_lines):
    trace_id, header = _traceparent()
    response = Client(raise_request_exception=False).get("/test/boom", HTTP_TRACEPARENT=header)

    assert response.status_code == 500
    body = response.json()
    assert body["trace_id"] == trace_id
    assert set(body) == {"detail", "code", "trace_id"}
    assert "secret stack" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    errors = [line for line in log_lines() if line.get("level") == "error"]
    assert errors, "the crash was not logged"
    assert all(line["trace_id"] == trace_id for line in errors)
    assert any("RuntimeError: deliberate failure" in line.get("exception", "") for line in errors)


@pytest.mark.django_db
@pytest.mark.urls("tests.tracing.urls")
def test_it_sends_a_child_traceparent_on_outbound_calls(client):
    trace_id, header = _traceparent()
    with RecordingServer() as server:
        response = client.get("/test/call-out", {"url": f"{server.url}/ping"}, HTTP_TRACEPARENT=header)
    assert response.status_code == 200
    [received] = server.requests
    match = TRACEPARENT_RE.match(received["headers"]["traceparent"])
    assert match, received["headers"]
    assert match.group(1) == trace_id
    _, own_span = TRACEPARENT_RE.match(response.headers["traceparent"]).groups()
    assert match.group(2) != own_span  # a child span of the request's, not the request's own


@pytest.mark.django_db(transaction=True)
def test_it_keeps_the_request_trace_in_eager_tasks(issue_key, log_lines):
    """The embedded default runs tasks inline: they log under the request's trace and id."""
    client = Client(HTTP_AUTHORIZATION=f"Bearer {issue_key(ApiKey.Scope.OPERATOR)}")
    trace_id, header = _traceparent()
    response = client.post("/api/v1/cycles", HTTP_TRACEPARENT=header)
    assert response.status_code == 202
    lines = log_lines()
    steps = [line for line in lines if line.get("event") == "cycle_step_finished"]
    assert len(steps) == len(CYCLE_STEPS)
    for step in steps:
        assert step["trace_id"] == trace_id
        assert step["request_id"] == response.headers["X-Request-ID"]
    [finished] = [line for line in lines if line.get("event") == "request_finished"]
    assert finished["request_id"] == response.headers["X-Request-ID"]  # not wiped by the task


@pytest.mark.urls("tests.tracing.urls")
def test_it_answers_an_oversized_body_with_json_413(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = client.post("/api/test/read-body", data=b"x" * 2000, content_type="application/octet-stream")
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
