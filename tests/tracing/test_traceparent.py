"""W3C Trace Context on inbound requests (docs/tracing.md)."""

import re

import pytest

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01"
TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")

pytestmark = pytest.mark.django_db


def _get(client, **headers):
    return client.get("/healthz", **{f"HTTP_{k.upper()}": v for k, v in headers.items()})


def _ids(response) -> tuple[str, str]:
    match = TRACEPARENT_RE.match(response.headers["traceparent"])
    assert match, response.headers["traceparent"]
    return match.group(1), match.group(2)


def test_it_continues_a_valid_traceparent_with_a_new_span(client):
    response = _get(client, traceparent=VALID)
    assert response.status_code == 200
    trace_id, span_id = _ids(response)
    assert trace_id == TRACE
    assert span_id != PARENT


def test_it_starts_a_trace_without_a_header(client):
    first, second = _ids(_get(client)), _ids(_get(client))
    assert first[0] != second[0]
    assert first[0] != "0" * 32


INVALID = {
    "short trace id": f"00-{TRACE[:-1]}-{PARENT}-01",
    "long parent id": f"00-{TRACE}-{PARENT}0-01",
    "uppercase": f"00-{TRACE.upper()}-{PARENT}-01",
    "non-hex": f"00-{TRACE[:-1]}g-{PARENT}-01",
    "all-zero trace id": f"00-{'0' * 32}-{PARENT}-01",
    "all-zero parent id": f"00-{TRACE}-{'0' * 16}-01",
    "version ff": f"ff-{TRACE}-{PARENT}-01",
    "version 00 with extra fields": f"00-{TRACE}-{PARENT}-01-extra",
    "empty": "",
    "garbage": "not a traceparent",
}


@pytest.mark.parametrize("header", INVALID.values(), ids=INVALID.keys())
def test_it_starts_a_new_trace_for_an_invalid_traceparent(client, header):
    response = _get(client, traceparent=header, tracestate="vendor=value")
    assert response.status_code == 200
    trace_id, _ = _ids(response)
    assert trace_id != TRACE
    assert trace_id != "0" * 32
    assert "tracestate" not in response.headers  # an invalid traceparent drops tracestate too


def test_it_accepts_a_higher_version_with_extra_fields(client):
    response = _get(client, traceparent=f"cc-{TRACE}-{PARENT}-01-what-the-future-holds")
    assert _ids(response)[0] == TRACE


def test_it_keeps_tracestate_of_a_continued_trace(client):
    response = _get(client, traceparent=VALID, tracestate="congo=t61rcWkgMzE")
    assert response.headers["tracestate"] == "congo=t61rcWkgMzE"


def test_it_sends_a_request_id(client):
    first, second = _get(client), _get(client)
    assert first.headers["X-Request-ID"]
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


def test_it_ignores_an_upstream_request_id_unless_trusted(client):
    response = _get(client, x_request_id="from-the-proxy")
    assert response.headers["X-Request-ID"] != "from-the-proxy"


def test_it_keeps_a_trusted_upstream_request_id(settings):
    from django.test import Client

    settings.TRUST_UPSTREAM_REQUEST_ID = True
    response = _get(Client(), x_request_id="from-the-proxy")
    assert response.headers["X-Request-ID"] == "from-the-proxy"


def test_it_logs_one_line_per_request_without_the_client_address_unless_asked(client, settings, log_lines):
    from django.test import Client

    _get(client)
    settings.LOG_CLIENT_IP = True
    _get(Client(REMOTE_ADDR="192.0.2.7"))
    first, second = [line for line in log_lines() if line.get("event") == "request_finished"]
    assert "client_ip" not in first
    assert second["client_ip"] == "192.0.2.7"
