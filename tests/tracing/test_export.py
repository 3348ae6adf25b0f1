"""Spans leave the process over OTLP/HTTP only when an endpoint is configured (SPEC §3)."""

import os
import subprocess
import sys
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.tracing.http_server import RecordingServer

ROOT = Path(__file__).resolve().parents[2]


def _run_agency(tmp_path, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "OTEL_", "LOG_"))}
    db = tmp_path / "export.sqlite3"
    base = {**clean, "DATABASE_URL": f"sqlite:///{db}", "LOG_FORMAT": "json"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=base, check=True, timeout=120)
    return subprocess.run(
        [sys.executable, "manage.py", "run_agency"],
        cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


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
    assert f'"trace_id": "{trace_ids.pop()}"' in result.stderr  # the same trace the log lines name


def test_it_exports_nothing_when_the_trace_is_not_sampled(tmp_path):
    with RecordingServer() as collector:
        _run_agency(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_TRACES_SAMPLE_RATIO="0")
    assert _exported_spans(collector) == []
