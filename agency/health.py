"""`GET /healthz`: can this process reach what it needs? Public, no secrets."""

import os
import secrets
import threading
import time

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from agency.celery import app as celery_app
from agency.gateway.selectors import gateway_health


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


# The last broker answer per broker URL (and when it came), reused for HEALTH_BROKER_CACHE_SECONDS: probes from
# several load balancers cost the broker one connection per process every few seconds, and a
# hung broker costs at most one timeout per process in that time, not one per probe.
_broker_seen: dict[str, tuple[float, dict]] = {}


def broker_check() -> dict:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"ok": True, "mode": "eager"}
    url, now = celery_app.conf.broker_write_url or celery_app.conf.broker_url, time.monotonic()
    seen = _broker_seen.get(url)
    if seen is not None and now - seen[0] < settings.HEALTH_BROKER_CACHE_SECONDS:
        return {**seen[1], "cached": True}
    try:
        result = _broker_probe()
    except Exception as exc:  # reported (and remembered) like a success
        result = {"ok": False, "error": type(exc).__name__}
    _broker_seen[url] = (now, result)
    return result


def _broker_probe() -> dict:
    timeout = settings.HEALTH_CHECK_TIMEOUT_SECONDS
    # One attempt (kombu's retries sleep 2 s before the second), and a Redis that accepts the
    # connection but never answers must not hold the probe either.
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    with celery_app.connection_for_write(connect_timeout=timeout, transport_options=options) as conn:
        conn.ensure_connection(max_retries=0)
    return {"ok": True, "mode": "broker", "transport": conn.transport_cls}


def cache_check() -> dict:
    """Write a short-lived key and read it back (bounded by the cache's socket timeouts)."""
    key, value = f"healthz:{os.getpid()}:{threading.get_ident()}", secrets.token_hex(8)
    cache.set(key, value, timeout=10)
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    if cache.get(key) != value:
        return {"ok": False, "backend": backend, "error": "the value read back differs"}
    return {"ok": True, "backend": backend}


def model_gateway_check() -> dict:
    """The breakers: `ok`, `degraded` (some breaker not closed) or `down` (some route has every
    deployment open). Never a failing check: a model provider's outage is not this instance's, and
    taking every instance out of the load balancer would not bring the provider back. The database's
    own failures are the `database` check's (an unmigrated one answers `SELECT 1`): here, `unknown`."""
    try:
        health = gateway_health()
    except DatabaseError as exc:
        return {"ok": True, "status": "unknown", "error": type(exc).__name__}
    if not health["deployments"]:
        health["detail"] = "no model deployments configured; baseline agent only"
    return {"ok": True, **health}


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {
        "database": _timed(database_check),
        "broker": _timed(broker_check),
        "cache": _timed(cache_check),
        "model_gateway": _timed(model_gateway_check),
    }
    healthy = all(c["ok"] for c in checks.values())
    status = "ok" if checks["model_gateway"].get("status") == "ok" else "degraded"  # the gateway's own "ok"
    if not healthy:
        status = "unavailable"
    return JsonResponse({"status": status, "checks": checks}, status=200 if healthy else 503)
