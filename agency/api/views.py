"""Foundation endpoints: API keys (operator) and on-demand agency cycles."""

import uuid

from django.db import transaction
from django_celery_results.models import TaskResult
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView, get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agency.api.idempotency import idempotent
from agency.models import ApiKey
from agency.services.api_keys import api_key_revoke
from tracing.context import current_trace_id


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


class CycleOut(serializers.Serializer):
    task_id = serializers.CharField()
    trace_id = serializers.CharField()


class CycleStartApi(APIView):
    """Start an agency cycle on the workers now (beat also runs one on a schedule)."""

    api_access = {"POST": ("operator", ("agency.add_cyclerun",))}

    @extend_schema(
        request=None,
        responses={202: CycleOut},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        from agency.tasks import agency_cycle

        task_id = str(uuid.uuid4())
        transaction.on_commit(lambda: agency_cycle.apply_async(task_id=task_id))
        body = CycleOut({"task_id": task_id, "trace_id": current_trace_id()}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


class CycleStatusOut(serializers.Serializer):
    task_id = serializers.CharField()
    status = serializers.CharField()
    date_done = serializers.DateTimeField(allow_null=True)
    result = serializers.JSONField(allow_null=True)


class CycleStatusApi(APIView):
    api_access = {"GET": ("read", ("agency.view_cyclerun",))}

    @extend_schema(responses=CycleStatusOut)
    def get(self, request: Request, task_id: str) -> Response:
        row = TaskResult.objects.filter(task_id=task_id, task_name="agency.cycle").first()
        if row is None:
            body = {"task_id": task_id, "status": "PENDING", "date_done": None, "result": None}
        else:
            body = {"task_id": task_id, "status": row.status, "date_done": row.date_done, "result": row.result}
        return Response(CycleStatusOut(body).data)
