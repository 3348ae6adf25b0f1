"""The product's routes plus an endpoint that needs the write scope and nothing else."""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from agency.urls import urlpatterns as product_urlpatterns


class WriteOnly(APIView):
    api_access = {"POST": ("write", ())}

    def post(self, request):
        return Response({"ok": True})


urlpatterns = [path("api/test/write", WriteOnly.as_view()), *product_urlpatterns]
