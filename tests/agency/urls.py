"""The product's routes plus an endpoint guarded by the write scope (none exists yet)."""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from agency.api.auth import WriteScope
from agency.urls import urlpatterns as product_urlpatterns


class WriteOnly(APIView):
    permission_classes = [WriteScope]

    def post(self, request):
        return Response({"ok": True})


urlpatterns = [path("api/test/write", WriteOnly.as_view()), *product_urlpatterns]
