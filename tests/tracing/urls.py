"""The product's routes plus two views that only tests need: one that fails, one that calls out."""

import httpx
from django.http import JsonResponse
from django.urls import path

from agency.urls import urlpatterns as product_urlpatterns


def boom(request):
    raise RuntimeError("deliberate failure with a secret stack")


def call_out(request):
    response = httpx.get(request.GET["url"], timeout=5)
    return JsonResponse({"status": response.status_code})


urlpatterns = [
    path("test/boom", boom),
    path("test/call-out", call_out),
    *product_urlpatterns,
]
