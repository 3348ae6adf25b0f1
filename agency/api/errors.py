"""The one JSON error shape of the whole service: `{"detail", "code", "trace_id"}`.

Validation errors add `errors` (field → messages); conflicts add the `id` of
the existing object. Every error body is built by `error_body`, whoever
answers: DRF's exception handler for API views, `JsonErrorMiddleware` for
exceptions that escape a view (outages, bugs) and the 404/500 handlers for
URLs no view matches. The `trace_id` is the one to quote to support; the same
id is on the error's log line.
"""

import structlog
from django.conf import settings
from django.core.exceptions import BadRequest, PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import page_not_found
from kombu.exceptions import OperationalError as BrokerUnavailable
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from agency.cache import CACHE_OUTAGES
from agency.errors import DomainError
from tracing.context import current_trace_id
from tracing.redaction import default_redactor

logger = structlog.get_logger(__name__)

# Exceptions Django already turns into the right 4xx answer.
_HANDLED_BY_DJANGO = (Http404, PermissionDenied, SuspiciousOperation, BadRequest)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is too large."
    default_code = "too_large"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"

    def __init__(self, detail=None, code=None, existing_id=None):
        super().__init__(detail, code)
        self.existing_id = existing_id


def error_body(detail: str, code: str, **extra) -> dict:
    """The body of every error answer."""
    return {"detail": detail, "code": code, **extra, "trace_id": current_trace_id()}


def json_error(status_code: int, detail: str, code: str) -> JsonResponse:
    """An error answer outside DRF (middleware, URL handlers)."""
    return JsonResponse(error_body(detail, code), status=status_code)


def _first_code(codes) -> str:
    if isinstance(codes, str):
        return codes
    if isinstance(codes, dict):
        codes = list(codes.values())
    for item in codes or []:
        found = _first_code(item)
        if found:
            return found
    return "error"


def exception_handler(exc, context):
    """DRF's handler, answering in our shape; domain refusals are 409 with the existing id."""
    if isinstance(exc, DomainError):
        exc = Conflict(str(exc), code=exc.code, existing_id=exc.existing_id)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # unexpected: JsonErrorMiddleware answers 500 with the trace id
    extra = {}
    if isinstance(exc, exceptions.ValidationError):
        extra["errors"] = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        detail = "Invalid input."
    else:
        detail = str(exc.detail)
    if getattr(exc, "existing_id", None) is not None:
        extra["id"] = exc.existing_id
    body = error_body(detail, _first_code(exc.get_codes()), **extra)
    return Response(body, status=response.status_code, headers=_kept_headers(response))


def _kept_headers(response: Response) -> dict[str, str]:
    return {k: v for k, v in response.items() if k in ("WWW-Authenticate", "Retry-After", "Allow")}


class JsonErrorMiddleware:
    """Unexpected errors answer JSON with the trace id, never a stack trace; a URL with a NUL
    character is refused before any view runs (400).

    A database, broker or cache that cannot be reached answers 503 with `Retry-After` so that
    clients back off instead of treating the outage as a bug (uses of the cache that fail open
    catch its errors themselves: agency/cache.py).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            refused = _body_refused(request)
            if refused is not None:
                return refused
        if _has_nul(request):
            # PostgreSQL refuses NUL in text: a path or query value carrying one would fail
            # as a 500 wherever it reaches the database (admin searches, path parameters).
            if request.path.startswith("/api/"):
                return json_error(400, "The URL contains a NUL character.", "bad_request")
            raise BadRequest("The URL contains a NUL character.")
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RequestDataTooBig):
            return json_error(413, "The request body is too large.", "too_large")
        if isinstance(exception, _HANDLED_BY_DJANGO):
            return _client_error(request, exception)
        if isinstance(exception, (OperationalError, InterfaceError, BrokerUnavailable, *CACHE_OUTAGES)) or (
            type(exception) is DatabaseError
        ):
            logger.error("dependency_unavailable", path=request.path, error=f"{type(exception).__name__}: {exception}")
            response = json_error(503, "The service is temporarily unavailable.", "unavailable")
            response.headers["Retry-After"] = "5"
            return response
        span = trace.get_current_span()
        if span.is_recording():
            # Type and masked message only: the raw text and stack may quote a secret path.
            message = default_redactor().text(str(exception))
            span.add_event("exception", {"exception.type": type(exception).__name__, "exception.message": message})
            span.set_status(Status(StatusCode.ERROR, type(exception).__name__))
        logger.exception("unhandled_exception", path=request.path, method=request.method)
        return json_error(500, "Internal server error.", "server_error")


def _body_refused(request: HttpRequest) -> JsonResponse | None:
    """An API body whose declared length is not a number, or is over `API_BODY_MAX_BYTES`, is refused
    before anything reads it (the JSON parser also stops reading at the limit)."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not declared.isdecimal():
        return json_error(400, "Content-Length must be a whole number of bytes.", "bad_request")
    if int(declared) > settings.API_BODY_MAX_BYTES:
        return json_error(413, f"The request body is over {settings.API_BODY_MAX_BYTES} bytes.", "too_large")
    return None


def _has_nul(request: HttpRequest) -> bool:
    if "\x00" in request.path:
        return True
    return any("\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists())


def _client_error(request: HttpRequest, exception: Exception) -> HttpResponse | None:
    """JSON for the API; Django's own pages (admin, delivery pages) elsewhere."""
    if not request.path.startswith("/api/"):
        return None
    if isinstance(exception, Http404):
        return json_error(404, "Not found.", "not_found")
    if isinstance(exception, PermissionDenied):
        return json_error(403, "You do not have permission to perform this action.", "permission_denied")
    return json_error(400, "Bad request.", "bad_request")


@csrf_exempt  # a 404 changes nothing; a CSRF refusal would be Django's HTML page
def api_not_found_view(request: HttpRequest, route: str = "") -> JsonResponse:
    """The last route under /api/: JSON 404 for every method, in DEBUG too (where Django's own
    404 page is HTML, as is the redirect APPEND_SLASH would answer to /api/v1/schema)."""
    return json_error(404, "Not found.", "not_found")


def not_found_view(request, exception=None):
    """404 for URLs no route matches: JSON under the API, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return json_error(404, "Not found.", "not_found")
    return page_not_found(request, exception)


def server_error_view(request):
    """Last resort for errors raised outside any view (e.g. in a middleware)."""
    return json_error(500, "Internal server error.", "server_error")
