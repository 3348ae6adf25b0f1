"""Posting and bid endpoints for integrations (docs/bids.md): thin adapters over the services."""

import django_filters
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.generics import ListAPIView, RetrieveAPIView, get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agency.api.auth import actor_of
from agency.api.idempotency import idempotent
from bids.models import Bid, Posting
from bids.services.bids import BidRefused, bid_approve, bid_create, bid_withdraw


class PostingOut(serializers.ModelSerializer):
    marketplace = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    domain = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Posting
        fields = [
            "id", "marketplace", "external_id", "title", "description", "url", "budget_min_cents",
            "budget_max_cents", "currency", "skills", "posted_at", "first_seen_at", "last_seen_at", "decision",
            "reasons", "domain", "proposed_cents", "expected_cost_cents", "expected_profit_cents", "confidence",
            "evaluated_at",
        ]  # fmt: skip


class PostingFilter(django_filters.FilterSet):
    marketplace = django_filters.CharFilter(field_name="marketplace__slug")
    decision = django_filters.ChoiceFilter(choices=Posting.Decision.choices)

    class Meta:
        model = Posting
        fields = ["marketplace", "decision"]


class PostingListApi(ListAPIView):
    """Postings found on the marketplaces, newest first, with their evaluation."""

    serializer_class = PostingOut
    filterset_class = PostingFilter
    api_access = {"GET": ("read", ("bids.view_posting",))}

    def get_queryset(self):
        return Posting.objects.select_related("marketplace", "domain").order_by("-first_seen_at", "-id")


class PostingDetailApi(RetrieveAPIView):
    serializer_class = PostingOut
    api_access = {"GET": ("read", ("bids.view_posting",))}
    queryset = Posting.objects.select_related("marketplace", "domain")


class BidOut(serializers.ModelSerializer):
    marketplace = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Bid
        fields = [
            "id", "marketplace", "posting", "amount_cents", "currency", "proposal", "status", "remote_id",
            "task", "sends", "last_error", "created_at", "submitted_at", "decided_at", "trace_id",
        ]  # fmt: skip


class BidIn(serializers.Serializer):
    posting = serializers.IntegerField()
    amount_cents = serializers.IntegerField(required=False, min_value=1)
    proposal = serializers.CharField(required=False, allow_blank=True, default="", max_length=20000)


class BidFilter(django_filters.FilterSet):
    marketplace = django_filters.CharFilter(field_name="marketplace__slug")
    status = django_filters.ChoiceFilter(choices=Bid.Status.choices)

    class Meta:
        model = Bid
        fields = ["marketplace", "status", "posting"]


class BidListCreateApi(ListAPIView):
    """List bids (read scope); make a draft bid on a posting (write scope): 201, or 409 with the live
    bid's `id` when the posting has one."""

    serializer_class = BidOut
    filterset_class = BidFilter
    api_access = {"GET": ("read", ("bids.view_bid",)), "POST": ("write", ("bids.add_bid",))}

    def get_queryset(self):
        return Bid.objects.select_related("marketplace").order_by("-created_at", "-id")

    @extend_schema(
        request=BidIn,
        responses={201: BidOut},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        params = BidIn(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        posting = Posting.objects.select_related("domain").filter(pk=data["posting"]).first()
        if posting is None:
            raise exceptions.ValidationError({"posting": ["No such posting."]})
        try:
            bid = bid_create(
                posting=posting,
                actor=actor_of(request),
                amount_cents=data.get("amount_cents"),
                proposal=data["proposal"],
            )
        except BidRefused as exc:
            raise exceptions.ValidationError({"amount_cents": [str(exc)]}) from exc
        return Response(BidOut(bid).data, status=status.HTTP_201_CREATED)


class BidDetailApi(RetrieveAPIView):
    serializer_class = BidOut
    api_access = {"GET": ("read", ("bids.view_bid",))}
    queryset = Bid.objects.select_related("marketplace")


class BidApproveApi(APIView):
    """Approve a draft: it is sent after commit (simulated in training mode; left approved where the
    marketplace takes no API bids, for an operator to send by hand). 409 when not a draft."""

    api_access = {"POST": ("operator", ("bids.change_bid",))}

    @extend_schema(request=None, responses=BidOut)
    def post(self, request: Request, pk: int) -> Response:
        bid = bid_approve(bid=get_object_or_404(Bid, pk=pk), actor=actor_of(request))
        bid.refresh_from_db()
        return Response(BidOut(bid).data)


class BidWithdrawApi(APIView):
    """Withdraw a draft, approved or submitted bid (a sent one is retracted at the marketplace); 409
    otherwise, and for the second of two concurrent withdrawals."""

    api_access = {"POST": ("operator", ("bids.change_bid",))}

    @extend_schema(request=None, responses=BidOut)
    def post(self, request: Request, pk: int) -> Response:
        bid = bid_withdraw(
            bid=get_object_or_404(Bid.objects.select_related("marketplace"), pk=pk), actor=actor_of(request)
        )
        return Response(BidOut(bid).data)
