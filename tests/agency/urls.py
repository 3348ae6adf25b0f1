"""The product's routes plus endpoints for tests: one that needs the write scope and nothing else,
one that reads the shared cache with nothing to catch its errors."""

from django.core.cache import cache
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from agency.urls import urlpatterns as product_urlpatterns


class WriteOnly(APIView):
    api_access = {"POST": ("write", ())}

    def post(self, request):
        return Response({"ok": True})


class CacheRead(APIView):
    api_access = {"GET": ("read", ())}
    throttle_classes = []

    def get(self, request):
        return Response({"value": cache.get("tests:value")})


urlpatterns = [
    path("api/test/write", WriteOnly.as_view()),
    path("api/test/cache", CacheRead.as_view()),
    *product_urlpatterns,
]
