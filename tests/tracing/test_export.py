"""Spans leave the process over OTLP/HTTP only when an endpoint is configured (docs/tracing.md)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.tracing.http_server import RecordingServer

pytestmark = pytest.mark.single_pass
ROOT = Path(__file__).resolve().parents[2]


def _clean_env(**env) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "OTEL_", "LOG_"))}
    return {**clean, "LOG_FORMAT": "json", "AGENCY_DOTENV": "false", **env}


def _run_agency(tmp_path, **env) -> subprocess.CompletedProcess:
    base = _clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'export.sqlite3'}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=base, check=True, timeout=120)
    return subprocess.run(
        [sys.executable, "manage.py", "run_agency"],
        cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


def _one_request(path: str, traceparent: str, **env) -> dict:
    result = subprocess.run(
        [sys.executable, "tests/tracing/one_request.py", path, traceparent],
        cwd=ROOT, env=_clean_env(**env), capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def _exported_spans(server: RecordingServer) -> list:
    spans = []
    for request in server.requests:
        assert request["path"] == "/v1/traces"
        assert request["headers"]["content-type"] == "application/x-protobuf"
        message = ExportTraceServiceRequest.FromString(request["body"])
        for resource_spans in message.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
    return spans


def test_it_exports_the_spans_of_a_command_to_the_collector(tmp_path):
    with RecordingServer() as collector:
        result = _run_agency(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_TRACES_SAMPLE_RATIO="1")
    spans = _exported_spans(collector)
    names = {span.name for span in spans}
    assert {"command run_agency", "cycle housekeeping"} <= names
    trace_ids = {span.trace_id.hex() for span in spans}
    assert len(trace_ids) == 1
    logged = {json.loads(line).get("trace_id") for line in result.stderr.splitlines() if line.startswith("{")}
    assert logged == trace_ids  # the log lines name the same trace


def test_it_exports_nothing_when_the_trace_is_not_sampled(tmp_path):
    with RecordingServer() as collector:
        _run_agency(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_TRACES_SAMPLE_RATIO="0")
    assert _exported_spans(collector) == []


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def _healthz_traced(*, caller_sampled: bool, **env) -> tuple[dict, list]:
    """GET /healthz in a fresh process as a child of TRACE/PARENT; its answer and the spans exported."""
    flags = "01" if caller_sampled else "00"
    with RecordingServer() as collector:
        answer = _one_request(
            "/healthz", f"00-{TRACE}-{PARENT}-{flags}", OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, **env
        )
    return answer, _exported_spans(collector)


def test_it_exports_a_sampled_requests_server_span_with_http_attributes():
    answer, spans = _healthz_traced(
        caller_sampled=True,
        OTEL_TRUST_REMOTE_SAMPLING="true",
        OTEL_TRACES_SAMPLE_RATIO="0",  # recorded because the trusted caller sampled it
    )
    [span] = [s for s in spans if s.kind == s.SPAN_KIND_SERVER]
    assert span.trace_id.hex() == TRACE
    assert span.parent_span_id.hex() == PARENT
    assert span.name == "GET healthz"
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["http.method"].string_value == "GET"
    assert attributes["http.status_code"].int_value == 200
    assert answer["headers"]["traceparent"] == f"00-{TRACE}-{span.span_id.hex()}-01"


def test_it_records_nothing_for_a_caller_that_did_not_sample():
    answer, spans = _healthz_traced(
        caller_sampled=False,
        OTEL_TRUST_REMOTE_SAMPLING="true",
        OTEL_TRACES_SAMPLE_RATIO="1",  # not recorded: the trusted caller did not sample it
    )
    assert spans == []
    assert answer["headers"]["traceparent"].startswith(f"00-{TRACE}-")  # ids still flow


def test_it_does_not_let_an_untrusted_caller_force_recording():
    answer, spans = _healthz_traced(caller_sampled=True, OTEL_TRACES_SAMPLE_RATIO="0")
    assert spans == []
    assert answer["headers"]["traceparent"].startswith(f"00-{TRACE}-")


def test_it_continues_the_trace_with_the_stock_django_instrumentation_too():
    answer, spans = _healthz_traced(
        caller_sampled=True, OTEL_DJANGO_INSTRUMENTATION="stock", OTEL_TRACES_SAMPLE_RATIO="1"
    )
    assert answer["status"] == 200
    [span] = [s for s in spans if s.kind == s.SPAN_KIND_SERVER]
    assert span.trace_id.hex() == TRACE
    assert answer["headers"]["traceparent"] == f"00-{TRACE}-{span.span_id.hex()}-01"
    assert answer["headers"]["X-Request-ID"]
