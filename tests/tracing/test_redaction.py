"""A secret in a URL path (a client's delivery token) reaches no log line and no span (docs/tracing.md)."""

import json
import subprocess
import sys

import pytest

from tests.tracing.http_server import RecordingServer
from tests.tracing.test_export import ROOT, _clean_env, _exported_spans
from tracing.redaction import Redactor

TOKEN = "Zq8-s3cr3t_delivery-T0ken"


def test_it_masks_whatever_follows_a_secret_prefix_and_nothing_else():
    redactor = Redactor(["/deliver/"])
    assert redactor.text(f"GET /deliver/12/{TOKEN}/3") == "GET /deliver/…"
    assert redactor.text(f"'http://x/deliver/1/{TOKEN}/' failed") == "'http://x/deliver/…' failed"
    assert redactor.text(f"a /deliver/1/{TOKEN} and /deliver/2/{TOKEN}x") == "a /deliver/… and /deliver/…"
    assert redactor.text("GET /api/v1/tasks/12") == "GET /api/v1/tasks/12"
    assert Redactor([]).text(f"/deliver/1/{TOKEN}") == f"/deliver/1/{TOKEN}"


@pytest.mark.django_db
def test_a_token_in_a_delivery_request_is_not_logged(client, log_lines):
    client.get(f"/deliver/1/{TOKEN}/")
    lines = log_lines()
    assert next(line for line in lines if line["event"] == "request_finished")["request"] == "GET /deliver/…"
    assert TOKEN not in json.dumps(lines)


@pytest.mark.django_db
@pytest.mark.urls("tests.tracing.urls")
def test_a_crash_under_a_secret_path_logs_neither_the_path_nor_the_message_quoting_it(client, log_lines):
    response = client.get(f"/deliver/broken/{TOKEN}/")
    assert response.status_code == 500
    lines = log_lines()
    [crash] = [line for line in lines if line["event"] == "unhandled_exception"]
    assert crash["path"] == "/deliver/…"
    assert "could not serve /deliver/…" in crash["exception"]  # the traceback is there, masked
    assert TOKEN not in json.dumps(lines)


@pytest.mark.single_pass
@pytest.mark.parametrize("instrumentation", ["lean", "stock"])
def test_a_database_outage_on_a_delivery_link_leaks_the_token_nowhere(tmp_path, instrumentation):
    """A fresh process on a database without tables: the delivery view fails with 503, sampled and exported."""
    env = _clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}",
        OTEL_TRACES_SAMPLE_RATIO="1",
        OTEL_DJANGO_INSTRUMENTATION=instrumentation,
        LOG_LEVEL="DEBUG",
    )
    with RecordingServer() as collector:
        result = subprocess.run(
            [sys.executable, "tests/tracing/one_request.py", f"/deliver/7/{TOKEN}/"],
            cwd=ROOT, env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url},
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == 503
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    [outage] = [line for line in lines if line["event"] == "dependency_unavailable"]
    assert outage["path"] == "/deliver/…"
    assert TOKEN not in result.stderr and TOKEN not in result.stdout
    spans = _exported_spans(collector)
    assert all(TOKEN not in str(span) for span in spans)
    if instrumentation == "lean":  # the stock middleware makes no span at all for secret paths
        [server] = [s for s in spans if s.kind == s.SPAN_KIND_SERVER]
        attributes = {a.key: a.value.string_value for a in server.attributes}
        assert "http://testserver/deliver/…" in attributes.values()


def test_console_lines_mask_a_traceback_too(capsys, settings):
    """Development logs render tracebacks themselves; they are text before the mask runs, in both formats."""
    import structlog

    from tracing.logging import configure_logging

    configure_logging(level="INFO", fmt="console", cache=False, secret_path_prefixes=settings.SECRET_PATH_PREFIXES)
    try:
        try:
            raise RuntimeError(f"could not serve /deliver/3/{TOKEN}/")
        except RuntimeError:
            structlog.get_logger("tests").exception("crashed")
        err = capsys.readouterr().err
    finally:
        configure_logging(level="DEBUG", fmt="json", cache=False, secret_path_prefixes=settings.SECRET_PATH_PREFIXES)
    assert "crashed" in err and "could not serve /deliver/…" in err
    assert TOKEN not in err
