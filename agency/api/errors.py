"""One JSON error shape for the whole API: `{"detail", "code"}`.

Validation errors add `errors` (field → messages); conflicts add the `id` of
the existing object; every error carries the `trace_id` to quote to support.
"""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.views.defaults import page_not_found
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from agency.errors import DomainError
from tracing.context import current_trace_id
from tracing.middleware import json_error


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"

    def __init__(self, detail=None, code=None, existing_id=None):
        super().__init__(detail, code)
        self.existing_id = existing_id


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
    if isinstance(exc, DomainError):
        exc = Conflict(str(exc), code=exc.code, existing_id=exc.existing_id)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # unexpected: tracing.middleware answers 500 with the trace id
    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        body = {"detail": "Invalid input.", "code": _first_code(exc.get_codes()), "errors": errors}
    else:
        body = {"detail": str(exc.detail), "code": _first_code(exc.get_codes())}
    if getattr(exc, "existing_id", None) is not None:
        body["id"] = exc.existing_id
    body["trace_id"] = current_trace_id()
    return Response(body, status=response.status_code, headers=_kept_headers(response))


def _kept_headers(response: Response) -> dict[str, str]:
    return {k: v for k, v in response.items() if k in ("WWW-Authenticate", "Retry-After", "Allow")}


def not_found_view(request, exception=None):
    """404 for URLs no route matches: JSON under the API, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return json_error(404, "Not found.", "not_found")
    return page_not_found(request, exception)


def server_error_view(request):
    """Last resort for errors raised outside any view (e.g. in a middleware)."""
    return json_error(500, "Internal server error.", "server_error")
