"""The request middleware's request id, log level and server span, at their edges."""

import re

import pytest
from django.test import Client
from opentelemetry import trace

from agency.models import ApiKey
from tests.conftest import client_with_key

HEX_ID = re.compile(r"^[0-9a-f]{32}$")


def request_id(**headers) -> str:
    response = Client().get("/healthz", **{f"HTTP_{k.upper()}": v for k, v in headers.items()})
    return response.headers["X-Request-ID"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("upstream", "kept"),
    [("r", True), ("r" * 200, True), ("r" * 201, False), ("line\nbreak", False), ("", False)],
)
def test_a_trusted_upstream_request_id_is_kept_only_when_short_and_printable(settings, upstream, kept):
    settings.TRUST_UPSTREAM_REQUEST_ID = True
    answered = request_id(x_request_id=upstream)
    assert (answered == upstream) is kept
    if not kept:
        assert HEX_ID.match(answered)


@pytest.mark.django_db
def test_a_trusting_server_makes_its_own_id_when_none_is_sent(settings):
    settings.TRUST_UPSTREAM_REQUEST_ID = True
    assert HEX_ID.match(request_id())


@pytest.mark.django_db
def test_its_own_request_ids_are_128_random_bits_in_hex():
    ids = {request_id() for _ in range(3)}
    assert len(ids) == 3
    assert all(HEX_ID.match(found) for found in ids)


@pytest.mark.django_db
@pytest.mark.urls("tests.agency.urls")
@pytest.mark.parametrize(("status", "level"), [(500, "error"), (499, "warning"), (400, "warning"), (399, "info")])
def test_a_request_is_logged_at_the_level_its_status_deserves(issue_key, log_lines, status, level):
    writer = client_with_key(issue_key(ApiKey.Scope.WRITE))
    assert writer.post("/api/test/told", {"status": status}, format="json").status_code == status
    (line,) = [line for line in log_lines() if line.get("event") == "request_finished"]
    assert (line["code"], line["level"]) == (status, level)


@pytest.mark.django_db
@pytest.mark.urls("tests.agency.urls")
@pytest.mark.parametrize(("status", "error"), [(500, True), (499, False)])
def test_the_server_span_is_an_error_from_status_500(issue_key, recorded_spans, status, error):
    writer = client_with_key(issue_key(ApiKey.Scope.WRITE))
    writer.post("/api/test/told", {"status": status}, format="json")
    (server,) = [span for span in recorded_spans.get_finished_spans() if span.kind == trace.SpanKind.SERVER]
    assert (server.status.status_code == trace.StatusCode.ERROR) is error
    assert server.attributes["http.status_code"] == status
    assert server.instrumentation_scope.name == "agency.http"


@pytest.mark.django_db
def test_the_request_leaves_no_span_behind_in_the_callers_context(recorded_spans):
    Client().get("/healthz")
    assert not trace.get_current_span().get_span_context().is_valid


@pytest.mark.django_db
def test_under_the_stock_instrumentation_it_still_answers_with_a_request_id(settings):
    settings.OTEL_DJANGO_INSTRUMENTATION = "stock"  # OpenTelemetry's middleware would own the span
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert HEX_ID.match(response.headers["X-Request-ID"])
