"""Competitions, their results and the pairs' standings in the operator back office (docs/arena.md).

Nothing here writes a row itself: starting a competition calls `competition_start`, and every
routing change is one of `arena.services.standings`' promotions, as in the API.
"""

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from agency.admin import ReadOnlyAdmin, ReadOnlyInline, admin_actor, each_row
from agency.charts import win_rate_history_svg
from agency.models import AgentProfile, Task
from agency.money import dollars
from agency.services.routing import profile_routed
from arena.display import profit_difference, win_rate
from arena.models import DECISIVE, ArenaFile, ArenaResult, Competition, PairStanding
from arena.rules import wilson_interval
from arena.services.competitions import CompetitionRefused, competition_start
from arena.services.standings import duels, promotion_make, promotion_release, promotion_revert

CHART_DUELS = 300  # the chart's window: the pair's latest duels, counted from all before them


def _dollars(value: Decimal | int | None) -> str:
    return "—" if value is None else dollars(value)


def _model_calls_url(attempt_id: int) -> str:
    return f"{reverse('admin:agency_modelcall_changelist')}?agent_attempt__id__exact={attempt_id}"


# --- Competitions -----------------------------------------------------------------------------


class CompetitionStartForm(forms.Form):
    task = forms.IntegerField(
        min_value=1,
        max_value=2**63 - 1,
        help_text="The task's id: a paid task is worked by the competition (live), a completed one replayed.",
    )
    profile_a = forms.ModelChoiceField(queryset=AgentProfile.objects.filter(active=True))
    profile_b = forms.ModelChoiceField(queryset=AgentProfile.objects.filter(active=True))

    def clean_task(self) -> Task:
        task = Task.objects.select_related("domain").filter(pk=self.cleaned_data["task"]).first()
        if task is None:
            raise forms.ValidationError("No such task.")
        return task


def _side_rows(results: dict[str, ArenaResult | None]) -> list[tuple[str, list[object]]]:
    """One row per metric, one value per side ("a", "b"; None: the side has not started)."""
    metrics = [
        ("State", lambda r: r.get_state_display()),
        ("Passed the gate", lambda r: "yes" if r.passed_gate else "no"),
        ("Revenue", lambda r: _dollars(r.revenue_cents)),
        ("Model cost", lambda r: _dollars(r.model_cost_cents)),
        ("Compute cost", lambda r: _dollars(r.compute_cost_cents)),
        ("Profit", lambda r: _dollars(r.profit_cents)),
        ("Latency (ms)", lambda r: r.latency_ms),
        ("Error", lambda r: r.error or "—"),
        (
            "Files",
            lambda r: format_html_join("", "{} ({} bytes)<br>", ((f.name, f.size) for f in r.files.all())) or "—",
        ),
        (
            "Attempt",
            lambda r: format_html(
                '<a href="{}">#{}: its model calls</a>', _model_calls_url(r.attempt_id), r.attempt_id
            ),
        ),
    ]
    return [(label, [value(r) if r is not None else "—" for r in results.values()]) for label, value in metrics]


def sides_table(competition: Competition) -> str:
    """Both sides' results side by side, the winner's column highlighted."""
    found = {
        r.side: r for r in competition.results.select_related("profile").prefetch_related("files").order_by("side")
    }
    results = {side: found.get(side) for side in ArenaResult.Side.values}
    profiles = {"a": competition.profile_a, "b": competition.profile_b}
    won = {side: competition.winner_id == profiles[side].pk for side in results}

    def cell(tag: str, side: str, content) -> str:
        style = "background:#dff0d8;font-weight:bold" if won[side] else ""
        return format_html('<{} class="{}" style="{}">{}</{}>', tag, f"side-{side}", style, content, tag)

    head = format_html_join(
        "",
        "{}",
        (
            (cell("th", side, f"Side {side.upper()}: {profiles[side].name}" + (" (winner)" if won[side] else "")),)
            for side in results
        ),
    )
    body = format_html_join(
        "",
        "<tr><th>{}</th>{}</tr>",
        (
            (
                label,
                format_html_join("", "{}", ((cell("td", side, v),) for side, v in zip(results, values, strict=True))),
            )
            for label, values in _side_rows(results)
        ),
    )
    return format_html(
        '<table class="arena-sides"><thead><tr><th></th>{}</tr></thead><tbody>{}</tbody></table>', head, body
    )


@admin.register(Competition)
class CompetitionAdmin(admin.ModelAdmin):
    """Competitions, newest first. Read-only once started; "Start a competition" calls the service,
    which refuses a pair that already met on the task or a task that cannot compete."""

    list_display = ["id", "task", "mode", "status", "winner", "reason", "profile_a", "profile_b", "created_at"]
    list_filter = ["status", "mode", "reason", "domain"]
    search_fields = ["task__title", "task__id__exact"]
    list_select_related = ["task", "winner", "profile_a", "profile_b"]
    show_full_result_count = False  # no COUNT(*) over the whole table on every page
    fields = [
        "task", "domain", "mode", "status", "winner", "reason", "profile_a", "profile_b", "incumbent",
        "started_by", "created_at", "decided_at", "trace_id", "sides",
    ]  # fmt: skip
    readonly_fields = fields

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="results side by side")
    def sides(self, competition: Competition) -> str:
        return sides_table(competition)

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = CompetitionStartForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                with transaction.atomic():
                    competition = competition_start(
                        task=data["task"],
                        profile_a=data["profile_a"],
                        profile_b=data["profile_b"],
                        actor=admin_actor(request),
                    )
            except CompetitionRefused as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(request, f"Competition #{competition.pk} started ({competition.mode}).")
                return HttpResponseRedirect(reverse("admin:arena_competition_change", args=[competition.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Start a competition",
            "opts": self.opts,
            "form": form,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/arena/competition/start.html", context)


class ArenaFileInline(ReadOnlyInline):
    model = ArenaFile
    fields = ["name", "content_type", "size", "sha256"]


@admin.register(ArenaResult)
class ArenaResultAdmin(ReadOnlyAdmin):
    list_display = [
        "competition", "side", "profile", "state", "passed_gate", "revenue_cents", "model_cost_cents",
        "compute_cost_cents", "profit_cents", "latency_ms", "model_calls",
    ]  # fmt: skip
    list_filter = ["state", "passed_gate", "side"]
    list_select_related = ["competition", "profile"]
    show_full_result_count = False
    fields = [
        "competition", "side", "profile", "attempt", "model_calls", "state", "passed_gate", "revenue_cents",
        "model_cost_cents", "compute_cost_cents", "profit_cents", "latency_ms", "summary", "error", "started_at",
        "finished_at", "trace_id",
    ]  # fmt: skip
    readonly_fields = fields
    inlines = [ArenaFileInline]

    @admin.display(description="model calls")
    def model_calls(self, result: ArenaResult) -> str:
        return format_html('<a href="{}">attempt #{}</a>', _model_calls_url(result.attempt_id), result.attempt_id)


# --- Standings ------------------------------------------------------------------------------------


def win_rate_history(standing: PairStanding, *, last: int = CHART_DUELS) -> tuple[list[tuple], int]:
    """(duel number, first's win rate, Wilson 95 % low, high) after each of the pair's `last` latest
    duels in the domain, counted from all duels before them (points start at the first decisive
    one); and how many duels the pair fought."""
    pair = {"domain_id": standing.domain_id, "first_id": standing.first_id, "second_id": standing.second_id}
    window = list(
        duels(**pair).order_by("-decided_at", "-pk").values_list("pk", "decided_at", "winner_id", "reason")[:last]
    )[::-1]
    if not window:
        return [], 0
    start_pk, start_at = window[0][0], window[0][1]
    before = (
        duels(**pair)
        .filter(Q(decided_at__lt=start_at) | Q(decided_at=start_at, pk__lt=start_pk))
        .aggregate(
            duels=Count("pk"),
            decisive=Count("pk", filter=Q(reason__in=DECISIVE)),
            wins=Count("pk", filter=Q(reason__in=DECISIVE, winner_id=standing.first_id)),
        )
    )
    number, decisive, wins = before["duels"], before["decisive"], before["wins"]
    points = []
    for _, _, winner_id, reason in window:
        number += 1
        if reason in DECISIVE:
            decisive += 1
            wins += winner_id == standing.first_id
        interval = wilson_interval(wins, decisive)
        if interval is not None:
            points.append((number, wins / decisive, *interval))
    return points, number


class StandingChangeList(ChangeList):
    """The page's standings carry the profile routed for their domain: one look-up per domain on
    the page, through the routing service, not one per row."""

    def get_results(self, request):
        super().get_results(request)
        routed = {}
        for standing in self.result_list:
            if standing.domain_id not in routed:
                routed[standing.domain_id] = profile_routed(domain=standing.domain)
            standing.routed_now = routed[standing.domain_id]


@admin.register(PairStanding)
class PairStandingAdmin(ReadOnlyAdmin):
    """The leaderboard: per domain and pair of profiles (`first` is the smaller id), their duels and
    what they say. Promotions and their reverts are actions calling the arena's services."""

    list_display = [
        "domain", "first", "second", "first_wins", "second_wins", "ties", "none_passed", "win_rate",
        "profit_difference", "promotion", "routed",
    ]  # fmt: skip
    list_filter = ["promotion", "domain"]
    list_select_related = ["domain", "first", "second"]
    fields = [
        "domain", "first", "second", "first_wins", "second_wins", "ties", "none_passed", "win_rate",
        "profit_difference", "promotion", "promotion_change", "routed", "updated_at", "chart",
    ]  # fmt: skip
    readonly_fields = fields
    actions = ["promote_first", "promote_second", "revert_promotion", "release_hold"]

    def get_changelist(self, request, **kwargs):
        return StandingChangeList

    def has_promote_permission(self, request) -> bool:
        # Standings are never edited by hand, but whoever may change them may move the routing.
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.display(description="first's win rate [95 %]")
    def win_rate(self, standing: PairStanding) -> str:
        return win_rate(standing)

    @admin.display(description="mean profit difference [95 %]")
    def profit_difference(self, standing: PairStanding) -> str:
        return profit_difference(standing)

    @admin.display(description="routed now")
    def routed(self, standing: PairStanding) -> str:
        # The changelist looked it up per domain (StandingChangeList); the change page shows one standing.
        profile = standing.routed_now if hasattr(standing, "routed_now") else profile_routed(domain=standing.domain)
        return profile.name if profile is not None else "—"

    @admin.display(description="win rate over the duels")
    def chart(self, standing: PairStanding) -> str:
        points, fought = win_rate_history(standing)
        if not points:
            return "No decisive duel yet."
        shown = f"the last {CHART_DUELS} of {fought} duels" if fought > CHART_DUELS else f"all {fought} duels"
        return format_html(
            '<div class="arena-win-rate">{}</div>'
            "<p>{}'s share of the decisive duels against {} after each duel ({}), with its Wilson 95 % interval.</p>",
            win_rate_history_svg(points),
            standing.first.name,
            standing.second.name,
            shown,
        )

    @admin.action(description="Promote the first profile (route the domain to it)", permissions=["promote"])
    def promote_first(self, request, queryset):
        self._each(
            request, queryset, "promoted", lambda s, actor: promotion_make(standing=s, profile=s.first, actor=actor)
        )

    @admin.action(description="Promote the second profile (route the domain to it)", permissions=["promote"])
    def promote_second(self, request, queryset):
        self._each(
            request, queryset, "promoted", lambda s, actor: promotion_make(standing=s, profile=s.second, actor=actor)
        )

    @admin.action(description="Revert the promotion (and hold the pair)", permissions=["promote"])
    def revert_promotion(self, request, queryset):
        self._each(request, queryset, "reverted and held", lambda s, actor: promotion_revert(standing=s, actor=actor))

    @admin.action(description="Release the hold (promotions resume)", permissions=["promote"])
    def release_hold(self, request, queryset):
        self._each(request, queryset, "released", lambda s, actor: promotion_release(standing=s, actor=actor))

    def _each(self, request, queryset, done_words: str, apply) -> None:
        actor = admin_actor(request)
        rows = queryset.select_related("domain", "first", "second", "promotion_change")
        done, refused = each_row(rows, lambda standing: apply(standing, actor))
        self.message_user(request, f"{done} pair(s) {done_words}.")
        for refusal in refused:
            self.message_user(request, refusal, level=messages.ERROR)
