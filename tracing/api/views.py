"""`GET /api/v1/traces/{trace_id}`: the trace search for integrations."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tracing.selectors import is_trace_id, trace_records
from tracing.views import admin_change_url, viewable_models


class TraceRecordOut(serializers.Serializer):
    model = serializers.CharField()
    id = serializers.CharField(source="pk")
    created_at = serializers.DateTimeField()
    summary = serializers.CharField()
    admin_url = serializers.CharField(allow_null=True)


class TraceOut(serializers.Serializer):
    trace_id = serializers.CharField()
    count = serializers.IntegerField()
    records = TraceRecordOut(many=True)


class TraceDetailApi(APIView):
    """Every stored record of one trace, oldest first.

    An API key needs the operator scope (a trace spans every app) and sees every record;
    a staff session sees the records of the models its admin permissions let it view,
    as in the admin's trace search. The project's permission class reads `api_access`.
    """

    api_access = {"GET": ("operator", ())}

    @extend_schema(responses=TraceOut, operation_id="traces_retrieve")
    def get(self, request: Request, trace_id: str) -> Response:
        trace_id = trace_id.strip().lower()
        if not is_trace_id(trace_id):
            raise ValidationError({"trace_id": ["A trace id is 32 hexadecimal characters."]})
        user = request.user
        # A staff login (a real user) is limited like the admin; an API key is not a user.
        records = trace_records(trace_id, models=viewable_models(user) if user.pk is not None else None)
        rows = [
            {
                "model": r.model,
                "pk": r.pk,
                "created_at": r.created_at,
                "summary": r.summary,
                "admin_url": admin_change_url(r),
            }
            for r in records
        ]
        return Response(TraceOut({"trace_id": trace_id, "count": len(rows), "records": rows}).data)
