"""Charts for the back office, drawn by pygal as inline SVG (no script: tooltips come from each
value's <title>). A chart is cached by what it shows: the same figures give the same picture
without drawing it again (docs/console.md)."""

import hashlib
import re
from collections.abc import Sequence
from decimal import Decimal

import pygal
from django.core.cache import cache
from django.utils.safestring import SafeString, mark_safe
from pygal.style import Style

from agency.money import dollars

CACHE_SECONDS = 24 * 3600
_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)
WIDTH = 860
INK, GAIN, LOSS = "#264b5d", "#2e7d4f", "#b5462f"
COST_COLOURS = {"marketplace fees": "#e0a458", "model calls": LOSS, "compute": "#7d5ba6"}
STYLE = {
    "background": "transparent", "plot_background": "transparent", "foreground": "#333", "foreground_strong": "#333",
    "foreground_subtle": "#ccc", "font_family": "sans-serif", "label_font_size": 11, "major_label_font_size": 11,
    "legend_font_size": 12, "value_font_size": 11, "tooltip_font_size": 12, "opacity": ".9", "opacity_hover": "1",
    "guide_stroke_color": "#e6e6e6", "major_guide_stroke_color": "#e6e6e6", "guide_stroke_dasharray": "0",
    "major_guide_stroke_dasharray": "0",
}  # fmt: skip
COMMON = {
    "width": WIDTH, "js": [], "disable_xml_declaration": True, "legend_at_bottom": True, "legend_box_size": 10,
    "margin": 8, "truncate_legend": -1, "truncate_label": -1,
}  # fmt: skip


def _dollars_text(value: float | None) -> str:
    # The charts plot dollars; the money rule (sign, separators, cents) is agency.money's.
    return "" if value is None else dollars(value * 100, 2)


def _percent_text(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _dollars(cents: Sequence[int | Decimal]) -> list[float]:
    return [float(c) / 100 for c in cents]


def _render(chart) -> SafeString:
    # pygal writes with ElementTree, which escapes every label and value it is given. It always adds a
    # script holding its configuration for its interactive mode; the page runs no chart script.
    svg = _SCRIPT.sub("", chart.render(is_unicode=True))
    return mark_safe(svg)  # noqa: S308


def _cached(kind: str, data: object, draw) -> SafeString:
    key = f"chart:{kind}:" + hashlib.sha256(repr(data).encode()).hexdigest()
    svg = cache.get(key)
    if svg is None:
        svg = str(_render(draw()))
        cache.set(key, svg, CACHE_SECONDS)
    return mark_safe(svg)  # noqa: S308


def money_by_day_svg(
    days: Sequence[str], revenue: Sequence[int], costs: dict[str, Sequence[Decimal]], profit: Sequence[Decimal]
) -> SafeString:
    """Revenue stacked up from zero and the costs down from it, one bar a day, then the profit of
    each day as a line below, on the same days; amounts given in cents."""

    def draw():
        colours = (GAIN, *(COST_COLOURS.get(name, LOSS) for name in costs))
        chart = pygal.StackedBar(
            height=300, style=Style(colors=colours, **STYLE), value_formatter=_dollars_text,
            x_labels=[d[5:] for d in days], x_labels_major_every=3, show_minor_x_labels=False,
            **COMMON,
        )  # fmt: skip
        chart.add("revenue", _dollars(revenue))
        for name, values in costs.items():
            chart.add(name, [-v for v in _dollars(values)])
        return chart

    def draw_profit():
        chart = pygal.Line(
            height=170, style=Style(colors=(INK,), **STYLE), value_formatter=_dollars_text, dots_size=2,
            x_labels=[d[5:] for d in days], x_labels_major_every=3, show_minor_x_labels=False,
            **COMMON,
        )  # fmt: skip
        chart.add("profit", _dollars(profit))
        return chart

    data = (tuple(days), tuple(revenue), tuple((k, tuple(v)) for k, v in costs.items()), tuple(profit))
    return mark_safe(_cached("days", data, draw) + _cached("profit", data, draw_profit))  # noqa: S308


def money_by_source_svg(
    names: Sequence[str], revenue: Sequence[int], costs: Sequence[Decimal], profit: Sequence[Decimal]
) -> SafeString:
    """Per source (marketplace): revenue, costs and profit side by side."""

    def draw():
        chart = pygal.HorizontalBar(
            height=110 + 60 * len(names), style=Style(colors=(GAIN, LOSS, INK), **STYLE),
            value_formatter=_dollars_text, x_labels=list(names), **COMMON,
        )  # fmt: skip
        chart.add("revenue", _dollars(revenue))
        chart.add("costs", _dollars(costs))
        chart.add("profit", _dollars(profit))
        return chart

    return _cached("sources", (tuple(names), tuple(revenue), tuple(costs), tuple(profit)), draw)


def win_rates_svg(
    names: Sequence[str], rates: Sequence[float], lows: Sequence[float], highs: Sequence[float]
) -> SafeString:
    """One bar per pair: the first profile's win rate, its 95 % interval as an error bar."""

    def draw():
        chart = pygal.HorizontalBar(
            height=90 + 40 * len(names), style=Style(colors=(INK,), **STYLE), value_formatter=_percent_text,
            range=(0, 1), x_labels=list(names), show_legend=False, **COMMON,
        )  # fmt: skip
        chart.add(
            "first's win rate",
            [{"value": r, "ci": {"low": lo, "high": hi}} for r, lo, hi in zip(rates, lows, highs, strict=True)],
        )
        return chart

    return _cached("win_rates", (tuple(names), tuple(rates), tuple(lows), tuple(highs)), draw)


def win_rate_history_svg(points: Sequence[tuple[int, float, float, float]]) -> SafeString:
    """A pair's win rate after each duel (duel number, rate, low, high), between its interval's bounds."""

    def draw():
        duels, rates, lows, highs = zip(*points, strict=True)
        chart = pygal.Line(
            width=640, height=260, style=Style(colors=(INK, LOSS, LOSS), **STYLE), value_formatter=_percent_text,
            range=(0, 1), x_labels=[str(d) for d in duels], x_labels_major_count=8, show_minor_x_labels=False,
            x_title="duel", show_dots=False, show_x_guides=False,
            **{k: v for k, v in COMMON.items() if k != "width"},
        )  # fmt: skip
        chart.add("win rate", list(rates))
        chart.add("95 % low", list(lows), stroke_style={"dasharray": "4, 3"}, show_dots=False)
        chart.add("95 % high", list(highs), stroke_style={"dasharray": "4, 3"}, show_dots=False)
        return chart

    return _cached("history", tuple(points), draw)
