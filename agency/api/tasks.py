"""Quote and task endpoints (docs/tasks.md, docs/api.md): thin adapters over pricing and the task services."""

import django_filters
import structlog
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.generics import ListAPIView, RetrieveAPIView, get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agency import pricing
from agency.api.auth import actor_of
from agency.api.errors import PayloadTooLarge
from agency.api.filters import IsoDateTimeFilter
from agency.api.idempotency import idempotent
from agency.models import Client, Domain, Task
from agency.services.payments import (
    InvalidSignature,
    PaymentProviderUnavailable,
    PaymentsNotConfigured,
    stripe_event_process,
    webhook_verify,
)
from agency.services.tasks import TaskOrder, task_cancel, task_create
from agency.services.uploads import UploadRejected, UploadTooLarge, upload_from_text, upload_validate

logger = structlog.get_logger(__name__)


class PaymentsUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Card payments are not configured here; integrations with a write key can use payment=prepaid."
    default_code = "payments_unavailable"


class PaymentProviderDown(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The payment provider cannot be reached; no task was created. Try again shortly."
    default_code = "payment_provider_unavailable"


def _domain(slug: str) -> Domain:
    domain = Domain.objects.filter(slug=slug, active=True).first()
    if domain is None:
        raise exceptions.ValidationError({"domain": [f"Unknown or inactive domain {slug!r}."]})
    return domain


class QuoteIn(serializers.Serializer):
    domain = serializers.SlugField()
    complexity = serializers.ChoiceField(Task.Complexity.choices, default=Task.Complexity.MEDIUM)
    urgency = serializers.ChoiceField(Task.Urgency.choices, default=Task.Urgency.STANDARD)
    client_email = serializers.EmailField(required=False)


class QuoteOut(serializers.Serializer):
    domain = serializers.CharField()
    complexity = serializers.CharField()
    urgency = serializers.CharField()
    base_price_cents = serializers.IntegerField()
    discount_percent = serializers.IntegerField()
    discount_cents = serializers.IntegerField()
    price_cents = serializers.IntegerField()
    currency = serializers.CharField()
    is_high_value = serializers.BooleanField()


class QuoteApi(APIView):
    """The price a task would have now, repeat-client discount included (the price charged)."""

    api_access = {"GET": ("read", ())}

    @extend_schema(parameters=[QuoteIn], responses=QuoteOut)
    def get(self, request: Request) -> Response:
        params = QuoteIn(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        quote = pricing.quote(
            domain=_domain(data["domain"]),
            complexity=data["complexity"],
            urgency=data["urgency"],
            client_email=data.get("client_email"),
        )
        return Response(QuoteOut(quote).data)


class TaskOut(serializers.ModelSerializer):
    domain = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    client_email = serializers.EmailField(source="client.email", read_only=True, allow_null=True)

    class Meta:
        model = Task
        fields = [
            "id", "status", "source", "domain", "title", "description", "complexity", "urgency", "client_email",
            "base_price_cents", "discount_cents", "price_cents", "currency", "is_high_value", "payment",
            "needs_operator", "attempts", "input_name", "input_content_type", "input_size", "input_sha256",
            "created_at", "updated_at", "paid_at", "completed_at", "trace_id",
        ]  # fmt: skip


class TaskCreatedOut(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    price_cents = serializers.IntegerField()
    discount_cents = serializers.IntegerField()
    currency = serializers.CharField()
    is_high_value = serializers.BooleanField()
    checkout_url = serializers.URLField(required=False)


class TaskIn(serializers.Serializer):
    domain = serializers.SlugField()
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(allow_blank=True, default="")
    complexity = serializers.ChoiceField(Task.Complexity.choices, default=Task.Complexity.MEDIUM)
    urgency = serializers.ChoiceField(Task.Urgency.choices, default=Task.Urgency.STANDARD)
    client_email = serializers.EmailField()
    client_name = serializers.CharField(max_length=200, allow_blank=True, default="")
    payment = serializers.ChoiceField([Task.Payment.STRIPE, Task.Payment.PREPAID])
    input_csv = serializers.CharField(required=False, trim_whitespace=False)
    input_file = serializers.FileField(required=False)

    def validate(self, attrs):
        if "input_csv" in attrs and "input_file" in attrs:
            raise serializers.ValidationError("Send input_csv or input_file, not both.")
        return attrs


class TaskFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Task.Status.choices)
    domain = django_filters.CharFilter(field_name="domain__slug")
    client = django_filters.CharFilter(method="filter_client", label="Client e-mail (any case)")
    created_after = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Task
        fields = ["status", "domain", "client", "created_after", "created_before"]

    def filter_client(self, queryset, name, value):
        return queryset.filter(client__email_normalized=Client.normalize_email(value))


class TaskListCreateApi(ListAPIView):
    """List tasks (read scope); create one (write scope)."""

    serializer_class = TaskOut
    filterset_class = TaskFilter

    api_access = {"GET": ("read", ("agency.view_task",)), "POST": ("write", ("agency.add_task",))}

    def get_queryset(self):
        return Task.objects.select_related("domain", "client").order_by("-created_at", "-id")

    @extend_schema(
        request={"application/json": TaskIn, "multipart/form-data": TaskIn},
        responses={201: TaskCreatedOut},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
    )
    @idempotent(atomic=False)  # a card payment calls Stripe between the task's transactions
    def post(self, request: Request) -> Response:
        params = TaskIn(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        order = TaskOrder(
            domain=_domain(data["domain"]),
            title=data["title"],
            description=data["description"],
            complexity=data["complexity"],
            urgency=data["urgency"],
            client_email=data["client_email"],
            client_name=data["client_name"],
            upload=_upload(data),
        )
        try:
            task, checkout_url = task_create(
                order=order, payment=data["payment"], actor=actor_of(request), work_key=request.idempotency_work_key
            )
        except PaymentsNotConfigured:
            raise PaymentsUnavailable() from None
        except PaymentProviderUnavailable:
            raise PaymentProviderDown() from None
        body = TaskCreatedOut(task).data
        if checkout_url:
            body["checkout_url"] = checkout_url
        return Response(body, status=status.HTTP_201_CREATED)


def _upload(data: dict):
    try:
        if "input_file" in data:
            file = data["input_file"]
            return upload_validate(name=file.name, file=file, size=file.size)
        if "input_csv" in data:
            return upload_from_text(text=data["input_csv"])
    except UploadTooLarge as exc:
        raise PayloadTooLarge(str(exc)) from None
    except UploadRejected as exc:
        field = "input_file" if "input_file" in data else "input_csv"
        raise exceptions.ValidationError({field: [str(exc)]}) from None
    return None


class TaskDetailApi(RetrieveAPIView):
    serializer_class = TaskOut
    api_access = {"GET": ("read", ("agency.view_task",))}

    def get_queryset(self):
        return Task.objects.select_related("domain", "client")


class CancelIn(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class TaskCancelApi(APIView):
    """Cancel a task that has not started (pending or paid); 409 otherwise."""

    api_access = {"POST": ("write", ("agency.change_task",))}

    @extend_schema(request=CancelIn, responses=TaskOut)
    def post(self, request: Request, pk: int) -> Response:
        params = CancelIn(data=request.data)
        params.is_valid(raise_exception=True)
        with transaction.atomic():
            task = get_object_or_404(Task.objects.select_related("domain", "client"), pk=pk)
            task_cancel(task=task, actor=actor_of(request), reason=params.validated_data["reason"])
        return Response(TaskOut(task).data)


class StripeWebhookApi(APIView):
    """Stripe's webhook: signed events that pay, or expire, a task's Checkout Session."""

    authentication_classes = []
    permission_classes = []
    throttle_classes = []

    @extend_schema(request=None, responses={200: dict}, auth=[])
    def post(self, request: Request) -> Response:
        try:
            event = webhook_verify(payload=request.body, signature=request.headers.get("Stripe-Signature", ""))
        except InvalidSignature as exc:
            logger.warning("stripe_webhook_refused", reason=str(exc))
            raise exceptions.ValidationError({"signature": [str(exc)]}, code="invalid_signature") from None
        record = stripe_event_process(event=event)
        return Response({"received": True, "outcome": record.outcome})
