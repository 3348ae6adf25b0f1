import time

import structlog
from django.core.management.base import BaseCommand
from opentelemetry import trace

from tracing.context import trace_started

logger = structlog.get_logger(__name__)


class TracedCommand(BaseCommand):
    """A management command that runs under a trace of its own.

    A command started from a shell gets a new trace; one called from inside
    another unit of work (`demo` calling `run_agency`) becomes a child span of
    it, so the whole run reads as one trace.
    """

    def execute(self, *args, **options):
        name = self.__module__.rsplit(".", 1)[-1]
        if trace.get_current_span().get_span_context().is_valid:
            span = trace.get_tracer("agency").start_as_current_span(f"command {name}")
        else:
            span = trace_started(f"command {name}")
        with span:
            started = time.monotonic()
            logger.info("command_started", command=name)
            try:
                result = super().execute(*args, **options)
            except Exception as exc:
                logger.error("command_failed", command=name, error=str(exc))
                raise
            logger.info("command_finished", command=name, duration_ms=round((time.monotonic() - started) * 1000))
            return result
