"""`GET /healthz`: can this process reach what it needs? Public, no secrets."""

import time

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from agency.celery import app as celery_app


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        result = check()
    except Exception as exc:  # a health check reports failures, it never raises
        result = {"ok": False, "error": type(exc).__name__}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def database_check() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True, "vendor": connection.vendor}


def broker_check() -> dict:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"ok": True, "mode": "eager"}
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=settings.HEALTH_CHECK_TIMEOUT_SECONDS)
    return {"ok": True, "mode": "broker", "transport": conn.transport_cls}


def model_gateway_check() -> dict:
    # The gateway's deployments and breakers arrive with the pipeline issue;
    # until then the baseline agent is the only worker and needs no model.
    return {"ok": True, "deployments": 0, "detail": "no model deployments configured; baseline agent only"}


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {
        "database": _timed(database_check),
        "broker": _timed(broker_check),
        "model_gateway": _timed(model_gateway_check),
    }
    healthy = all(c["ok"] for c in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks}, status=200 if healthy else 503
    )
