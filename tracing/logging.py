"""structlog and stdlib logging, configured once and rendered the same way.

Every line — ours through structlog, Django's and Celery's through stdlib —
passes the same processors, so each carries the `trace_id` and `span_id` of
the unit of work (request, task, command) that is current when it is emitted.
The ids are read from OpenTelemetry's current span, never from a variable
we would have to remember to reset.
"""

import json
import logging
import logging.config
import sys

import orjson
import structlog
from opentelemetry import trace

from tracing.redaction import Redactor


def stamp_trace(_logger, _method, event_dict: dict) -> dict:
    """Add the current span's ids to the event (explicit values win)."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid and "trace_id" not in event_dict:
        event_dict["trace_id"] = format(ctx.trace_id, "032x")
        event_dict["span_id"] = format(ctx.span_id, "016x")
    return event_dict


class StderrLogger:
    """Writes each rendered line to whatever `sys.stderr` is at that moment.

    Looking the stream up per line (instead of binding it once, as
    `structlog.PrintLogger` does) lets test capture and process managers
    replace stderr after logging was configured. One `write` per line keeps
    lines whole when threads log at once.
    """

    def msg(self, message: str) -> None:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


class CurrentStderrHandler(logging.StreamHandler):
    """A stdlib handler with the same late lookup of `sys.stderr`."""

    def __init__(self):
        super().__init__(stream=sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def _json_dumps(obj, default=None, **_kwargs) -> str:
    """orjson (several times faster than `json` on every log line), with `json` as the fallback."""
    try:
        return orjson.dumps(obj, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # e.g. an integer wider than 64 bits
        return json.dumps(obj, default=default)


def _renderer(fmt: str):
    if fmt == "json":
        return structlog.processors.JSONRenderer(serializer=_json_dumps)
    return structlog.dev.ConsoleRenderer(colors=False)


def configure_logging(
    *, level: str = "INFO", fmt: str = "console", cache: bool = True, secret_path_prefixes: tuple[str, ...] = ()
) -> None:
    """Configure both logging stacks.

    `cache` binds each structlog logger to this configuration on first use,
    which saves work on every line; turn it off where the configuration is
    changed later (development, tests). Paths under `secret_path_prefixes`
    are masked in every line, just before it is rendered (after exceptions
    are formatted, so tracebacks are masked too).
    """
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        stamp_trace,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Tracebacks become text before `redact` runs, in both formats, so they are masked too.
    exceptions = [structlog.processors.format_exc_info]
    redact = Redactor(secret_path_prefixes)
    renderer = _renderer(fmt)

    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *exceptions, redact, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=lambda *_args: StderrLogger(),
        cache_logger_on_first_use=cache,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *exceptions,
            redact,
            renderer,
        ],
    )
    handler = CurrentStderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Chatty libraries stay at WARNING unless asked for explicitly.
    for name in (
        "django.db.backends",
        "django.utils.autoreload",
        "urllib3",
        "httpx",
        "httpcore",
        "httpx2",
        "httpcore2",
        "openai",
    ):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    for name in ("django", "celery", "kombu"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
