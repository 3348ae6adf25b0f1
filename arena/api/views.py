"""Competition and leaderboard endpoints (docs/api.md): thin adapters over `arena.services`."""

import django_filters
from django.core.validators import slug_re
from django.db.models import Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from agency.api.auth import actor_of
from agency.api.filters import IdFilter
from agency.api.idempotency import idempotent
from agency.models import AgentProfile, Task
from agency.services.routing import profile_routed
from arena.models import ArenaFile, ArenaResult, Competition, PairStanding
from arena.services.competitions import competition_start

ID_MAX = 2**63 - 1


def _cents(**kwargs) -> serializers.DecimalField:
    # Strings, so fractions of a cent survive every JSON parser (as `cost_cents` of the ledger).
    return serializers.DecimalField(max_digits=24, decimal_places=10, coerce_to_string=True, read_only=True, **kwargs)


class ArenaFileOut(serializers.ModelSerializer):
    class Meta:
        model = ArenaFile
        fields = ["name", "content_type", "size", "sha256"]


class ArenaResultOut(serializers.ModelSerializer):
    profile = serializers.SlugRelatedField(slug_field="name", read_only=True)
    model_cost_cents = _cents()
    compute_cost_cents = _cents()
    profit_cents = _cents()
    files = ArenaFileOut(many=True, read_only=True)

    class Meta:
        model = ArenaResult
        fields = [
            "side", "profile", "state", "passed_gate", "revenue_cents", "model_cost_cents", "compute_cost_cents",
            "profit_cents", "latency_ms", "error", "attempt", "files", "started_at", "finished_at",
        ]  # fmt: skip


class CompetitionOut(serializers.ModelSerializer):
    domain = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    profile_a = serializers.SlugRelatedField(slug_field="name", read_only=True)
    profile_b = serializers.SlugRelatedField(slug_field="name", read_only=True)
    incumbent = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    winner = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    # Plain text in the schema: an enum named "reason" would collide with the escalations' one.
    reason = serializers.CharField(
        read_only=True, help_text="Why the winner won: gate, profit, cost, incumbent; none_passed; empty while running."
    )
    results = ArenaResultOut(many=True, read_only=True)

    class Meta:
        model = Competition
        fields = [
            "id", "task", "domain", "mode", "status", "profile_a", "profile_b", "incumbent", "winner", "reason",
            "results", "started_by", "created_at", "decided_at", "trace_id",
        ]  # fmt: skip


class CompetitionCreatedOut(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    mode = serializers.CharField()


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1, "maximum": ID_MAX},
            {"type": "string", "pattern": r"^[-a-zA-Z0-9_]+$", "maxLength": 50},
        ],
        "description": "An agent profile's id, or its name.",
    }
)
class ProfileField(serializers.Field):
    """An agent profile by id (a number, or a string of digits from a form) or by name."""

    default_error_messages = {
        "invalid": "Give a profile's id or name.",
        "unknown": "No such profile.",
    }

    def to_internal_value(self, data) -> AgentProfile:
        if isinstance(data, bool) or not isinstance(data, (int, str)):
            self.fail("invalid")
        text = str(data).strip()
        if text.isdecimal() and text.isascii():
            if not 1 <= int(text) <= ID_MAX:
                self.fail("unknown")
            found = AgentProfile.objects.filter(pk=int(text)).first()
        elif len(text) <= 50 and slug_re.match(text):
            found = AgentProfile.objects.filter(name=text).first()
        else:
            self.fail("invalid")
        if found is None:
            self.fail("unknown")
        return found

    def to_representation(self, value) -> str:
        return value.name


class CompetitionIn(serializers.Serializer):
    task = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    profile_a = ProfileField()
    profile_b = ProfileField()


class CompetitionFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Competition.Status.choices)
    mode = django_filters.ChoiceFilter(choices=Competition.Mode.choices)
    task = IdFilter(field_name="task_id")
    domain = django_filters.CharFilter(field_name="domain__slug")
    profile = django_filters.CharFilter(method="filter_profile", label="A profile's name, on either side")

    class Meta:
        model = Competition
        fields = ["status", "mode", "task", "domain", "profile"]

    def filter_profile(self, queryset, name, value):
        return queryset.filter(Q(profile_a__name=value) | Q(profile_b__name=value))


class CompetitionListCreateApi(ListAPIView):
    """List competitions, newest first (read scope); start one (operator scope: a live competition
    works a paid task with two agents): 201, or 409 with the `id` of the pair's competition on the
    task when they already met."""

    serializer_class = CompetitionOut
    filterset_class = CompetitionFilter
    api_access = {"GET": ("read", ("arena.view_competition",)), "POST": ("operator", ("arena.add_competition",))}

    def get_queryset(self):
        return (
            Competition.objects.select_related("domain", "profile_a", "profile_b", "incumbent", "winner")
            .prefetch_related("results__profile", "results__files")
            .order_by("-created_at", "-id")
        )

    @extend_schema(
        request=CompetitionIn,
        responses={201: CompetitionCreatedOut},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        params = CompetitionIn(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        task = Task.objects.select_related("domain").filter(pk=data["task"]).first()
        if task is None:
            raise exceptions.ValidationError({"task": ["No such task."]})
        competition = competition_start(
            task=task, profile_a=data["profile_a"], profile_b=data["profile_b"], actor=actor_of(request)
        )
        return Response(CompetitionCreatedOut(competition).data, status=status.HTTP_201_CREATED)


class CompetitionDetailApi(RetrieveAPIView):
    """One competition with both sides' results."""

    serializer_class = CompetitionOut
    api_access = {"GET": ("read", ("arena.view_competition",))}

    def get_queryset(self):
        return Competition.objects.select_related(
            "domain", "profile_a", "profile_b", "incumbent", "winner"
        ).prefetch_related("results__profile", "results__files")


class StandingOut(serializers.ModelSerializer):
    domain = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    first = serializers.SlugRelatedField(slug_field="name", read_only=True)
    second = serializers.SlugRelatedField(slug_field="name", read_only=True)
    decisive = serializers.IntegerField(read_only=True)
    win_rate = serializers.SerializerMethodField(help_text="first's share of the decisive duels.")
    profit_diff_mean_cents = _cents(allow_null=True, help_text="first's profit minus second's, per duel.")
    routed = serializers.SerializerMethodField(help_text="The profile a task of the domain gets now.")

    class Meta:
        model = PairStanding
        fields = [
            "id", "domain", "first", "second", "first_wins", "second_wins", "ties", "none_passed", "decisive",
            "win_rate", "win_rate_low", "win_rate_high", "profit_diff_mean_cents", "profit_diff_low_cents",
            "profit_diff_high_cents", "promotion", "promotion_change", "routed", "updated_at",
        ]  # fmt: skip

    @extend_schema_field(OpenApiTypes.DOUBLE)
    def get_win_rate(self, standing: PairStanding) -> float | None:
        return standing.first_wins / standing.decisive if standing.decisive else None

    @extend_schema_field({"type": "string", "nullable": True})
    def get_routed(self, standing: PairStanding) -> str | None:
        # One look-up per domain on the page, not per row: the page shares the serializer's context.
        routed = self.context.setdefault("routed_by_domain", {})
        if standing.domain_id not in routed:
            profile = profile_routed(domain=standing.domain)
            routed[standing.domain_id] = profile.name if profile is not None else None
        return routed[standing.domain_id]


class StandingFilter(django_filters.FilterSet):
    domain = django_filters.CharFilter(field_name="domain__slug")
    promotion = django_filters.ChoiceFilter(choices=PairStanding.Promotion.choices)

    class Meta:
        model = PairStanding
        fields = ["domain", "promotion"]


class LeaderboardApi(ListAPIView):
    """What each pair's competitions add up to per domain (counts from `first`'s side, the smaller
    profile id), with the profile each domain is routed to now."""

    serializer_class = StandingOut
    filterset_class = StandingFilter
    api_access = {"GET": ("read", ("arena.view_pairstanding",))}

    def get_queryset(self):
        return PairStanding.objects.select_related("domain", "first", "second").order_by(
            "domain__slug", "first_id", "second_id"
        )
