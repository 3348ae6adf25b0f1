"""`GET /api/v1/traces/{trace_id}`: the trace search for integrations."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tracing.selectors import is_trace_id, trace_records
from tracing.views import admin_change_url


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

    No permission is declared here: tracing knows no API keys or scopes. The view
    takes the project's default API permission (the strictest scope, since a trace
    spans every app); see `REST_FRAMEWORK` in the settings.
    """

    @extend_schema(responses=TraceOut, operation_id="traces_retrieve")
    def get(self, request: Request, trace_id: str) -> Response:
        trace_id = trace_id.strip().lower()
        if not is_trace_id(trace_id):
            raise ValidationError({"trace_id": ["A trace id is 32 hexadecimal characters."]})
        records = trace_records(trace_id)
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
