"""Request middleware: the trace, request id and log line of each request."""

import logging
import os
import time

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.wsgi import collect_request_attributes, wsgi_getter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tracing.context import propagator
from tracing.redaction import Redactor, default_redactor

logger = structlog.get_logger(__name__)


class RequestTraceMiddleware:
    """Each request's trace, request id, log line and response headers.

    - Continues the caller's W3C trace or starts one: OpenTelemetry's
      propagator parses `traceparent`/`tracestate` (an invalid header starts
      a new trace) and the SDK's sampler decides whether the server span is
      recorded; either way it has valid ids. With
      `OTEL_DJANGO_INSTRUMENTATION=stock` OpenTelemetry's Django middleware
      has already made the span and this one uses it.
    - Binds `request_id` for every log line of the request and writes one
      `request_finished` line (plus `request_started` at DEBUG).
    - Answers with `traceparent` (this request's span) and `X-Request-ID`.

    It is deliberately lean (measured in bench/tracing_overhead.py): HTTP
    attributes are computed only for recorded spans, and the log context is
    set and reset through structlog's context variables directly instead of
    copying the whole context per request.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.tracer = trace.get_tracer("agency.http")
        self.owns_span = settings.OTEL_DJANGO_INSTRUMENTATION == "lean"
        self.trust_request_id = settings.TRUST_UPSTREAM_REQUEST_ID
        self.log_client_ip = settings.LOG_CLIENT_IP
        self.redactor = default_redactor()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        span = token = None
        if self.owns_span:
            parent = propagator.extract(request.META, getter=wsgi_getter)
            span = self.tracer.start_span(request.method, context=parent, kind=SpanKind.SERVER)
            token = otel_context.attach(trace.set_span_in_context(span, parent))
        request_id = self._request_id(request)
        log_context = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            shown = f"{request.method} {self.redactor.text(request.path)}"
            logger.debug("request_started", request=shown)
            response = self.get_response(request)
            propagator.inject(response.headers)
            response.headers["X-Request-ID"] = request_id
            # Logged here, inside the trace. Django's own "Not Found"/"Internal
            # Server Error" line would come after the trace has ended, without
            # ids, and say the same thing again.
            response._has_been_logged = True
            extra = {"client_ip": request.META.get("REMOTE_ADDR")} if self.log_client_ip else {}
            logger.log(
                _level_for(response.status_code),
                "request_finished",
                request=shown,
                code=response.status_code,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
                **extra,
            )
            if span is not None and span.is_recording():
                _describe(span, request, response, self.redactor)
            return response
        finally:
            structlog.contextvars.reset_contextvars(**log_context)
            if span is not None:
                span.end()
                otel_context.detach(token)

    def _request_id(self, request: HttpRequest) -> str:
        if self.trust_request_id:
            upstream = request.META.get("HTTP_X_REQUEST_ID", "")
            if 0 < len(upstream) <= 200 and upstream.isprintable():
                return upstream
        return os.urandom(16).hex()  # as random as a UUID4, without building one


def _level_for(status: int) -> int:
    if status >= 500:
        return logging.ERROR
    if status >= 400:
        return logging.WARNING
    return logging.INFO


def _describe(span: trace.Span, request: HttpRequest, response: HttpResponse, redactor: Redactor) -> None:
    """The attributes OpenTelemetry's WSGI/Django instrumentation would set, secret paths masked."""
    attributes = collect_request_attributes(request.META)
    for key, value in attributes.items():
        if isinstance(value, str):
            attributes[key] = redactor.text(value)
    span.set_attributes(attributes)
    route = getattr(request.resolver_match, "route", None)
    if route:
        span.update_name(f"{request.method} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.status_code", response.status_code)
    if response.status_code >= 500:
        span.set_status(Status(StatusCode.ERROR))
