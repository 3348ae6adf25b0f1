"""The product's routes plus endpoints for tests: one that needs the write scope and nothing else,
one that reads the shared cache with nothing to catch its errors, and idempotent ones that answer
what they are told to."""

from django.core.cache import cache
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from agency.api.idempotency import idempotent
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


class Told(APIView):
    """Answers `{"status": N}` with status N, or raises for `{"raise": true}`; `runs` counts the calls
    that got past the idempotency layer, with the body each one saw."""

    api_access = {"POST": ("write", ())}
    runs: list = []

    def _answer(self, request):
        Told.runs.append({k: v.read() if hasattr(v, "read") else v for k, v in request.data.items()})
        if request.data.get("raise"):
            raise RuntimeError("told to fail")
        return Response({"run": len(Told.runs)}, status=int(request.data.get("status", 201)))

    @idempotent
    def post(self, request):
        return self._answer(request)


class ToldOutside(Told):
    @idempotent(atomic=False)
    def post(self, request):
        return self._answer(request)


urlpatterns = [
    path("api/test/told", Told.as_view()),
    path("api/test/told-outside", ToldOutside.as_view()),
    path("api/test/write", WriteOnly.as_view()),
    path("api/test/cache", CacheRead.as_view()),
    *product_urlpatterns,
]
