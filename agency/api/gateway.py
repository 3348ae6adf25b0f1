"""The model gateway's ledger over the API (docs/gateway.md, docs/api.md)."""

import django_filters
from rest_framework import serializers
from rest_framework.generics import ListAPIView

from agency.api.filters import IdFilter, IsoDateTimeFilter
from agency.models import ModelCall


class ModelCallOut(serializers.ModelSerializer):
    deployment = serializers.StringRelatedField()
    # Strings, so fractions of a cent survive every JSON parser.
    cost_cents = serializers.DecimalField(max_digits=24, decimal_places=10, coerce_to_string=True)
    provider_cost_cents = serializers.DecimalField(
        max_digits=24, decimal_places=10, coerce_to_string=True, allow_null=True
    )

    class Meta:
        model = ModelCall
        fields = [
            "id", "created_at", "deployment", "deployment_id", "route_id", "purpose", "task_id", "attempt", "outcome",
            "error_class", "status_code", "tokens_in", "tokens_out", "cost_cents", "provider_cost_cents",
            "latency_ms", "trace_id",
        ]  # fmt: skip


class ModelCallFilter(django_filters.FilterSet):
    task = IdFilter(field_name="task_id")
    deployment = IdFilter(field_name="deployment_id")
    purpose = django_filters.ChoiceFilter(choices=ModelCall.Purpose.choices)
    outcome = django_filters.ChoiceFilter(choices=ModelCall.Outcome.choices)
    created_after = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = ModelCall
        fields = ["task", "deployment", "purpose", "outcome", "created_after", "created_before"]


class ModelCallListApi(ListAPIView):
    """The ledger: one row per model call attempt, newest first."""

    api_access = {"GET": ("read", ("agency.view_modelcall",))}
    serializer_class = ModelCallOut
    filterset_class = ModelCallFilter

    def get_queryset(self):
        return ModelCall.objects.select_related("deployment__provider").order_by("-created_at", "-id")
