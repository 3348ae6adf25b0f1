"""The product's routes plus views that only tests need: failing, calling out, logging, reading a body."""

import time

import httpx
import structlog
from django.http import HttpResponse, JsonResponse
from django.urls import path

from agency.urls import urlpatterns as product_urlpatterns


def boom(request):
    raise RuntimeError("deliberate failure with a secret stack")


def broken_delivery(request, token):
    """A crash under a secret path whose message quotes the path, as real errors often do."""
    raise RuntimeError(f"could not serve {request.path}")


def call_out(request):
    response = httpx.get(request.GET["url"], timeout=5)
    return JsonResponse({"status": response.status_code})


def log_twice(request, marker):
    """Logs from inside the view, with a pause between, so concurrent requests interleave."""
    logger = structlog.get_logger("tests.view")
    logger.info("in_view", marker=marker)
    time.sleep(0.01)
    logger.info("in_view_again", marker=marker)
    return HttpResponse("ok")


def read_body(request):
    return HttpResponse(str(len(request.body)))


urlpatterns = [
    path("test/boom", boom),
    path("deliver/broken/<str:token>/", broken_delivery),
    path("test/call-out", call_out),
    path("test/log/<str:marker>", log_twice),
    path("api/test/read-body", read_body),
    *product_urlpatterns,
]
