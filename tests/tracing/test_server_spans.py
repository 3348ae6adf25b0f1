"""The server span of a recorded request: its name, HTTP attributes and status, secrets masked (docs/tracing.md)."""

import pytest

from tests.tracing.test_redaction import TOKEN

pytestmark = pytest.mark.django_db


def _server_span(recorded_spans):
    [span] = [s for s in recorded_spans.get_finished_spans() if s.kind.name == "SERVER"]
    return span


def test_it_names_the_span_after_the_route_and_describes_the_request(client, recorded_spans):
    response = client.get("/api/v1/tasks/12345?verbose=1", HTTP_USER_AGENT="agency-test/1")
    span = _server_span(recorded_spans)
    assert span.name == "GET api/v1/tasks/<int:pk>"
    attributes = dict(span.attributes)
    assert attributes["http.route"] == "api/v1/tasks/<int:pk>"
    assert attributes["http.method"] == "GET"
    assert attributes["http.status_code"] == response.status_code == 401
    assert attributes["http.url"] == "http://testserver/api/v1/tasks/12345?verbose=1"
    assert attributes["http.user_agent"] == "agency-test/1"
    assert span.status.status_code.name == "UNSET"  # a 4xx is the caller's error, not ours


@pytest.mark.urls("tests.tracing.urls")
def test_a_crash_marks_the_span_as_an_error(client, recorded_spans):
    client.raise_request_exception = False
    assert client.get("/test/boom").status_code == 500
    span = _server_span(recorded_spans)
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["http.status_code"] == 500


def test_a_path_without_a_route_keeps_the_method_as_its_name(client, recorded_spans):
    client.get("/nowhere/at/all")
    span = _server_span(recorded_spans)
    assert span.name == "GET" and "http.route" not in span.attributes


def test_a_delivery_token_reaches_no_span_attribute(client, recorded_spans):
    client.get(f"/deliver/1/{TOKEN}/?again={TOKEN}")
    span = _server_span(recorded_spans)
    assert span.attributes["http.url"] == "http://testserver/deliver/…"
    assert span.attributes["http.route"] == "deliver/<int:task_id>/<str:token>/"  # the pattern, not the path
    assert all(TOKEN not in str(value) for value in span.attributes.values())
