"""PostgreSQL queries get spans inside recorded traces (psycopg instrumentation)."""

import subprocess
import sys

import pytest

from tests.conftest import database_url
from tests.tracing.http_server import RecordingServer
from tests.tracing.test_export import ROOT, _clean_env, _exported_spans

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_it_gives_each_query_a_span_in_a_recorded_trace():
    with RecordingServer() as collector:
        env = _clean_env(
            DATABASE_URL=database_url(), OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_TRACES_SAMPLE_RATIO="1"
        )
        subprocess.run(
            [sys.executable, "manage.py", "run_agency"], cwd=ROOT, env=env, check=True, timeout=120, capture_output=True
        )
    spans = _exported_spans(collector)
    [command] = [span for span in spans if span.name == "command run_agency"]
    queries = [span for span in spans if span.kind == span.SPAN_KIND_CLIENT]
    assert queries, [span.name for span in spans]
    for span in queries:
        attributes = {a.key: a.value.string_value for a in span.attributes}
        assert attributes["db.system"] == "postgresql"
        assert span.trace_id == command.trace_id
