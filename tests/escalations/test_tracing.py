"""The relay continues the escalation's trace; secret URLs never reach the exported spans (docs/tracing.md).

Runs `relay_notifications` in another process exporting to a local OTLP
collector, so it needs a database server (a shared database).
"""

import subprocess
import sys

import pytest

from agency.outbox import relaying
from tests.agency.factories import TaskFactory
from tests.conftest import database_url
from tests.escalations import fakes
from tests.escalations.factories import ChannelFactory
from tests.tracing.http_server import RecordingServer
from tests.tracing.test_export import ROOT, _clean_env, _exported_spans
from tracing.context import trace_started

pytestmark = [pytest.mark.server_db, pytest.mark.django_db(transaction=True)]

SECRET_PATH = "/services/T0000/B0000/s3cr3t-webhook-token"


def test_the_notify_span_continues_the_escalation_trace_without_recording_the_secret_url():
    from escalations.services import escalation_open

    with fakes.slack() as slack, RecordingServer() as collector:
        ChannelFactory(kind="slack", target="", slug="test_slack")
        with relaying(), trace_started("test open"):  # no kick from here: the relay under test is the other process
            escalation, _ = escalation_open(task=TaskFactory(status="processing"), reason="integration", actor="t")
        env = _clean_env(
            DATABASE_URL=database_url(),
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
            OTEL_TRACES_SAMPLE_RATIO="1",
            NOTIFY_SECRET_TEST_SLACK=f"{slack.url}{SECRET_PATH}",
        )
        subprocess.run(
            [sys.executable, "manage.py", "relay_notifications"],
            cwd=ROOT, env=env, check=True, timeout=120, capture_output=True,
        )  # fmt: skip
    assert [request["path"] for request in slack.requests] == [SECRET_PATH]
    spans = _exported_spans(collector)
    [notify] = [span for span in spans if span.name == "notify slack"]
    assert notify.trace_id.hex() == escalation.trace_id
    attributes = {a.key: a.value for a in notify.attributes}
    assert attributes["http.response.status_code"].int_value == 200
    assert "s3cr3t" not in str(spans)
    assert not [span.name for span in spans if span.name.startswith("POST")]
