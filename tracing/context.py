"""The current trace, read and carried across boundaries.

Other apps use these helpers instead of touching OpenTelemetry directly: to
stamp rows with the trace id, to store a trace context with a row that a
later process continues (the notification outbox), and to start a unit of
work with a trace of its own (management commands, beat jobs).
"""

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

# W3C Trace Context only; every reader and writer of trace headers uses this one.
propagator = TraceContextTextMapPropagator()


def current_trace_id() -> str:
    """The 32-hex id of the current trace, or "" outside any unit of work."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def trace_carrier() -> dict[str, str]:
    """The current context as W3C headers (`traceparent`, `tracestate`), for storing."""
    carrier: dict[str, str] = {}
    propagator.inject(carrier)
    return carrier


@contextmanager
def trace_continued(carrier: dict[str, str] | None, name: str) -> Iterator[trace.Span]:
    """Run a block as a child of a stored context; a missing or invalid one starts a new trace."""
    parent = propagator.extract(carrier or {}, context=otel_context.Context())
    with trace.get_tracer("agency").start_as_current_span(name, context=parent) as span:
        yield span


@contextmanager
def trace_started(name: str) -> Iterator[trace.Span]:
    """Run a block under a brand-new trace, whatever is current."""
    with trace.get_tracer("agency").start_as_current_span(name, context=otel_context.Context()) as span:
        yield span
