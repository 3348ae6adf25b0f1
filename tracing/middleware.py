"""Request middleware: the server span, trace headers on every response, JSON for every crash."""

import structlog
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from kombu.exceptions import OperationalError as BrokerUnavailable
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.wsgi import collect_request_attributes, wsgi_getter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tracing.context import current_trace_id

logger = structlog.get_logger(__name__)
_propagator = TraceContextTextMapPropagator()

# Exceptions Django already turns into the right 4xx answer.
_HANDLED_BY_DJANGO = (Http404, PermissionDenied, SuspiciousOperation, BadRequest)


class ServerSpanMiddleware:
    """Continue the caller's W3C trace or start one, and make it current.

    OpenTelemetry's propagator parses `traceparent`/`tracestate` (an invalid
    header starts a new trace) and the SDK's sampler decides whether the span
    is recorded; either way it has valid ids. HTTP attributes are computed
    only for recorded spans, which is what keeps tracing cheap.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.tracer = trace.get_tracer("agency.http")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        parent = _propagator.extract(request.META, getter=wsgi_getter)
        span = self.tracer.start_span(request.method, context=parent, kind=SpanKind.SERVER)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            response = self.get_response(request)
            if span.is_recording():
                _describe(span, request, response)
            return response
        finally:
            span.end()
            otel_context.detach(token)


def _describe(span: trace.Span, request: HttpRequest, response: HttpResponse) -> None:
    """The attributes OpenTelemetry's WSGI/Django instrumentation would set."""
    span.set_attributes(collect_request_attributes(request.META))
    route = getattr(request.resolver_match, "route", None)
    if route:
        span.update_name(f"{request.method} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.status_code", response.status_code)
    if response.status_code >= 500:
        span.set_status(Status(StatusCode.ERROR))


class TraceResponseMiddleware:
    """Put this request's `traceparent` and `X-Request-ID` on the response.

    Runs inside the server span's middleware (which continued or started the
    trace) and django-structlog's (which bound `request_id`).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        _propagator.inject(response.headers)
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        if request_id:
            response.headers["X-Request-ID"] = request_id
        # django-structlog has logged this response, inside the trace. Django's
        # own "Not Found"/"Internal Server Error" line would come after the
        # trace has ended, without ids, and say the same thing again.
        response._has_been_logged = True
        return response


class JsonErrorMiddleware:
    """Unexpected errors answer JSON with the trace id, never a stack trace.

    A database or broker that cannot be reached answers 503 with `Retry-After` so that
    clients back off instead of treating the outage as a bug.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, _HANDLED_BY_DJANGO):
            return None
        trace_id = current_trace_id()
        if (
            isinstance(exception, (OperationalError, InterfaceError, BrokerUnavailable))
            or type(exception) is DatabaseError
        ):
            logger.error("dependency_unavailable", path=request.path, error=f"{type(exception).__name__}: {exception}")
            response = JsonResponse(
                {"detail": "The service is temporarily unavailable.", "code": "unavailable", "trace_id": trace_id},
                status=503,
            )
            response.headers["Retry-After"] = "5"
            return response
        span = trace.get_current_span()
        if span.is_recording():
            span.record_exception(exception)
        logger.exception("unhandled_exception", path=request.path, method=request.method)
        return server_error_response(trace_id)


def server_error_response(trace_id: str) -> JsonResponse:
    return JsonResponse(
        {"detail": "Internal server error.", "code": "server_error", "trace_id": trace_id},
        status=500,
    )
