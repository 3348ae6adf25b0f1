"""OpenTelemetry: the tracer provider and the instrumentations, set up once.

Trace ids are always assigned — every request, task and command has one and
it travels over every boundary — but spans are only *recorded* when they will
be exported. Without `OTEL_EXPORTER_OTLP_ENDPOINT` the sampler drops every
span, which leaves cheap non-recording spans that still carry valid ids; with
an endpoint, spans are sampled by `OTEL_TRACES_SAMPLE_RATIO` (parent-based, so
a caller's sampling decision is honoured).

Requests get their server span from `tracing.middleware.RequestTraceMiddleware`
unless `OTEL_DJANGO_INSTRUMENTATION=stock` asks for OpenTelemetry's Django
instrumentation: measured with bench/tracing_overhead.py, the stock middleware
computes HTTP attributes and metrics on every request, sampled or not, and
alone costs several per cent of an API read. Ours does that work only for
spans that are recorded. Celery and httpx use the stock instrumentations;
psycopg's is wrapped so that a query only gets a span inside a recorded trace.
"""

import re

from django.conf import settings
from django.db.backends.signals import connection_created
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

_provider: TracerProvider | None = None
_traced_cursor_classes: dict[type, type] = {}


def configure_tracing() -> TracerProvider:
    """Install the provider and instrument Django, Celery, httpx and psycopg."""
    global _provider
    if _provider is not None:
        return _provider

    endpoint = settings.OTEL_EXPORTER_OTLP_ENDPOINT
    sampler = _sampler() if endpoint else ALWAYS_OFF
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.OTEL_SERVICE_NAME}),
        sampler=sampler,
    )
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    if settings.OTEL_DJANGO_INSTRUMENTATION == "stock":
        # The stock middleware records the full path: requests under a secret path get no span at all.
        secret_paths = ",".join(re.escape(prefix) for prefix in settings.SECRET_PATH_PREFIXES)
        DjangoInstrumentor().instrument(tracer_provider=provider, excluded_urls=secret_paths or None)
    CeleryInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    connection_created.connect(_instrument_psycopg_connection, dispatch_uid="tracing.psycopg")
    _provider = provider
    return provider


def _sampler() -> ParentBased:
    ratio = TraceIdRatioBased(settings.OTEL_TRACES_SAMPLE_RATIO)
    if settings.OTEL_TRUST_REMOTE_SAMPLING:
        return ParentBased(ratio)
    return ParentBased(ratio, remote_parent_sampled=ratio, remote_parent_not_sampled=ratio)


def _instrument_psycopg_connection(sender, connection, **kwargs) -> None:
    """Trace the queries of each new PostgreSQL connection.

    `PsycopgInstrumentor().instrument()` patches `psycopg.connect`, but Django
    then replaces the connection's cursor class with its own, which silently
    drops the tracing. Wrapping Django's chosen cursor class after the
    connection is made keeps both.
    """
    if connection.vendor != "postgresql":
        return
    raw = connection.connection
    base = raw.cursor_factory
    traced = _traced_cursor_classes.get(base)
    if traced is None:
        traced = _traced_cursor_classes[base] = _sampled_cursor_class(base)
    raw.cursor_factory = traced


def _sampled_cursor_class(base: type) -> type:
    """Django's cursor class, with OpenTelemetry's query spans inside recorded traces only.

    A span per query costs a few per cent of a request; when the trace is not
    recorded nobody would ever see it, and the query has no children that
    would need its id.
    """
    from opentelemetry.instrumentation.psycopg import _new_cursor_factory

    otel_traced = _new_cursor_factory(base_factory=base, tracer_provider=_provider)

    class SampledTracedCursor(otel_traced):
        def execute(self, *args, **kwargs):
            if trace.get_current_span().is_recording():
                return super().execute(*args, **kwargs)
            return base.execute(self, *args, **kwargs)

        def executemany(self, *args, **kwargs):
            if trace.get_current_span().is_recording():
                return super().executemany(*args, **kwargs)
            return base.executemany(self, *args, **kwargs)

    return SampledTracedCursor


def tracer() -> trace.Tracer:
    return trace.get_tracer("agency")
