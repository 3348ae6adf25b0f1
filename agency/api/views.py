"""Foundation endpoints: API keys (operator) and on-demand agency cycles."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView, RetrieveAPIView, get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agency.api.idempotency import idempotent
from agency.cycle import cycle_request
from agency.models import ApiKey, CycleRun
from agency.services.api_keys import api_key_revoke


class ApiKeyOut(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "scope", "created_at", "last_used_at", "revoked_at"]


class ApiKeyListApi(ListAPIView):
    """API keys (never their secrets). Operator scope."""

    api_access = {"GET": ("operator", ("agency.view_apikey",))}
    serializer_class = ApiKeyOut
    filterset_fields = ["scope"]

    def get_queryset(self):
        return ApiKey.objects.order_by("-created_at", "-id")


class ApiKeyRevokeApi(APIView):
    api_access = {"POST": ("operator", ("agency.change_apikey",))}

    @extend_schema(request=None, responses=ApiKeyOut)
    def post(self, request: Request, pk: int) -> Response:
        api_key = get_object_or_404(ApiKey, pk=pk)
        return Response(ApiKeyOut(api_key_revoke(api_key=api_key)).data)


class CycleOut(serializers.ModelSerializer):
    class Meta:
        model = CycleRun
        fields = ["id", "status", "trigger", "planned", "steps", "created_at", "finished_at", "trace_id"]


class CycleStartApi(APIView):
    """Queue an agency cycle on the workers now (beat also runs one on a schedule).

    202 only once the cycle was handed to the broker; 503 (and nothing kept) when it cannot be.
    """

    api_access = {"POST": ("operator", ("agency.add_cyclerun",))}

    @extend_schema(
        request=None,
        responses={202: CycleOut},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        return Response(CycleOut(cycle_request()).data, status=status.HTTP_202_ACCEPTED)


class CycleDetailApi(RetrieveAPIView):
    """One cycle run: its status and what each finished step did."""

    # Operator scope: a failed step's error can name internal hosts.
    api_access = {"GET": ("operator", ("agency.view_cyclerun",))}
    serializer_class = CycleOut
    queryset = CycleRun.objects.all()
