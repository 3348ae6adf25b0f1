"""The operator's dashboard, the back office's landing page (docs/console.md): what needs
attention, money in and out per day and per marketplace, and the arena's standings. Each
section shows only if the operator may view the records behind it."""

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from agency.charts import money_by_day_svg, money_by_source_svg, win_rates_svg
from agency.console.selectors import (
    arena_standings,
    attention_items,
    money_by_day,
    money_by_marketplace,
    money_total,
    window_start,
)
from arena.display import profit_difference, win_rate

DAYS = 30
STANDINGS = 30  # pairs shown; all of them are on the standings page


def _may_view(user, *labels: str) -> bool:
    return all(user.has_perm(f"{label.split('.')[0]}.view_{label.split('.')[1]}") for label in labels)


def dashboard_context(request) -> dict:
    user, now = request.user, timezone.now()
    context = {"attention": [a for a in attention_items(now=now) if _may_view(user, _model_of(a.url))]}
    if _may_view(user, "agency.task", "agency.modelcall", "bids.bid"):
        context.update(_money(today=timezone.localdate(now)))
    if _may_view(user, "arena.pairstanding"):
        context.update(_arena())
    return context


def _model_of(url: str) -> str:
    # "/admin/<app>/<model>/?…" → "<app>.<model>"
    app_label, model_name = url.split("?")[0].strip("/").split("/")[-2:]
    return f"{app_label}.{model_name}"


def _money(*, today) -> dict:
    days = money_by_day(today=today, days=DAYS)
    total = money_total(days, label=f"Last {DAYS} days")
    start = window_start(today=today, days=DAYS)
    sources = money_by_marketplace(start=start, end=start + timedelta(days=DAYS), total=total)
    costs = {
        "marketplace fees": [d.fees for d in days],
        "model calls": [d.model_cost for d in days],
        "compute": [d.compute_cost for d in days],
    }
    return {
        "money_days": days,
        "money_total": total,
        "money_sources": sources,
        "money_days_chart": money_by_day_svg(
            [d.label for d in days], [d.revenue for d in days], costs, [d.profit for d in days]
        ),
        "money_sources_chart": money_by_source_svg(
            [s.label for s in sources],
            [s.revenue for s in sources],
            [s.costs for s in sources],
            [s.profit for s in sources],
        ),
    }


def _arena() -> dict:
    standings = arena_standings(limit=STANDINGS)
    rows = [(s, win_rate(s), profit_difference(s)) for s in standings]
    decided = [s for s in standings if s.win_rate_low is not None]
    chart = None
    if decided:
        chart = win_rates_svg(
            [f"{s.domain.slug}: {s.first.name} vs {s.second.name}" for s in decided],
            [s.first_wins / s.decisive for s in decided],
            [s.win_rate_low for s in decided],
            [s.win_rate_high for s in decided],
        )
    standings_url = reverse("admin:arena_pairstanding_changelist")
    return {"standings": rows, "standings_chart": chart, "standings_url": standings_url}
