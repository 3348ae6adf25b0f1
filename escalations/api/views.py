"""Escalation endpoints for integrations (docs/escalations.md): thin adapters over the services."""

import django_filters
from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.generics import ListAPIView, RetrieveAPIView, get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agency.api.auth import actor_of
from agency.api.errors import PayloadTooLarge
from agency.api.idempotency import idempotent
from agency.models import Task
from escalations.models import Escalation
from escalations.services import escalation_acknowledge, escalation_open, escalation_resolve


class EscalationOut(serializers.ModelSerializer):
    class Meta:
        model = Escalation
        fields = [
            "id", "task", "reason", "severity", "status", "detail", "context", "resolution", "notes",
            "created_at", "acknowledged_at", "resolved_at", "trace_id",
        ]  # fmt: skip


class EscalationIn(serializers.Serializer):
    task = serializers.IntegerField()
    reason = serializers.ChoiceField(Escalation.Reason.choices, default=Escalation.Reason.INTEGRATION)
    detail = serializers.CharField(required=False, allow_blank=True, default="")


class EscalationFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Escalation.Status.choices)
    severity = django_filters.ChoiceFilter(choices=Escalation.Severity.choices)
    reason = django_filters.ChoiceFilter(choices=Escalation.Reason.choices)

    class Meta:
        model = Escalation
        fields = ["status", "severity", "reason", "task"]


class EscalationListCreateApi(ListAPIView):
    """List escalations (read scope); raise one for a task (write scope): 201 new, 200 the open one."""

    serializer_class = EscalationOut
    filterset_class = EscalationFilter

    api_access = {
        "GET": ("read", ("escalations.view_escalation",)),
        "POST": ("write", ("escalations.add_escalation",)),
    }

    def get_queryset(self):
        return Escalation.objects.order_by("-created_at", "-id")

    @extend_schema(
        request=EscalationIn,
        responses={201: EscalationOut, 200: EscalationOut},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        params = EscalationIn(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        task = Task.objects.filter(pk=data["task"]).first()
        if task is None:
            raise exceptions.ValidationError({"task": ["No such task."]})
        escalation, created = escalation_open(
            task=task, reason=data["reason"], actor=actor_of(request), detail=data["detail"]
        )
        return Response(EscalationOut(escalation).data, status=status.HTTP_201_CREATED if created else 200)


class EscalationDetailApi(RetrieveAPIView):
    serializer_class = EscalationOut
    api_access = {"GET": ("read", ("escalations.view_escalation",))}
    queryset = Escalation.objects.all()


class EscalationAcknowledgeApi(APIView):
    api_access = {"POST": ("operator", ("escalations.change_escalation",))}

    @extend_schema(request=None, responses=EscalationOut)
    def post(self, request: Request, pk: int) -> Response:
        escalation = escalation_acknowledge(escalation=get_object_or_404(Escalation, pk=pk), actor=actor_of(request))
        return Response(EscalationOut(escalation).data)


class ResolveIn(serializers.Serializer):
    resolution = serializers.ChoiceField(Escalation.Resolution.choices)
    note = serializers.CharField(required=False, allow_blank=True, default="")
    deliverable = serializers.FileField(
        required=False, help_text="The finished work (multipart); goes with completed_manually and completes the task."
    )

    def validate(self, attrs):
        if "deliverable" in attrs and attrs["resolution"] != Escalation.Resolution.COMPLETED_MANUALLY:
            raise serializers.ValidationError({"deliverable": ["A deliverable goes with completed_manually."]})
        if "deliverable" in attrs and attrs["deliverable"].size > settings.TASK_INPUT_MAX_BYTES:
            raise PayloadTooLarge(f"A deliverable may be {settings.TASK_INPUT_MAX_BYTES} bytes at most.")
        return attrs


class EscalationResolveApi(APIView):
    """Resolve with an outcome for the task; 409 when already resolved.

    `completed_manually` takes the finished work as a multipart `deliverable` (unless the
    task already has one): it is stored for the client and the task completes.
    """

    api_access = {"POST": ("operator", ("escalations.change_escalation",))}

    @extend_schema(request={"application/json": ResolveIn, "multipart/form-data": ResolveIn}, responses=EscalationOut)
    def post(self, request: Request, pk: int) -> Response:
        params = ResolveIn(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        escalation = escalation_resolve(
            escalation=get_object_or_404(Escalation, pk=pk),
            resolution=data["resolution"],
            actor=actor_of(request),
            note=data["note"],
            deliverable=data.get("deliverable"),
        )
        return Response(EscalationOut(escalation).data)
