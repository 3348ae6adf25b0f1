"""Charts for the back office, drawn by matplotlib as inline SVG (text kept as text, so pages
stay searchable). A chart is cached by what it shows: the same figures give the same picture
without drawing it again (docs/console.md)."""

import hashlib
import io
from collections.abc import Sequence
from decimal import Decimal

import matplotlib
from django.core.cache import cache
from django.utils.safestring import SafeString, mark_safe
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

CACHE_SECONDS = 24 * 3600
INK, GAIN, LOSS, GRID = "#264b5d", "#2e7d4f", "#b5462f", "#d9d9d9"
COST_COLOURS = {"marketplace fees": "#e0a458", "model calls": "#b5462f", "compute": "#7d5ba6"}
STYLE = {
    "svg.fonttype": "none", "svg.hashsalt": "agency", "font.size": 9, "axes.edgecolor": GRID,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.color": GRID,
    "grid.linewidth": 0.6, "axes.axisbelow": True, "text.parse_math": False,
}  # fmt: skip
_DOLLARS = FuncFormatter(lambda value, _: f"-${-value:,.0f}" if value < 0 else f"${value:,.0f}")


def _svg(figure: Figure) -> SafeString:
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None})
    text = out.getvalue()
    # Our own drawing from our own numbers: matplotlib escapes the labels it writes.
    return mark_safe(text[text.index("<svg") :].strip())  # noqa: S308


def _cached(kind: str, data: object, draw) -> SafeString:
    key = f"chart:{kind}:" + hashlib.sha256(repr(data).encode()).hexdigest()
    svg = cache.get(key)
    if svg is None:
        with matplotlib.rc_context(STYLE):
            svg = _svg(draw())
        cache.set(key, str(svg), CACHE_SECONDS)
    return mark_safe(svg)  # noqa: S308


def _dollars(cents: Sequence[int | Decimal]) -> list[float]:
    return [float(c) / 100 for c in cents]


def money_by_day_svg(
    days: Sequence[str], revenue: Sequence[int], costs: dict[str, Sequence[Decimal]], profit: Sequence[Decimal]
) -> SafeString:
    """Revenue up, the costs stacked down from zero, profit as a line; amounts given in cents."""

    def draw() -> Figure:
        figure = Figure(figsize=(8.6, 3.0), layout="constrained")
        axes = figure.subplots()
        x = range(len(days))
        axes.bar(x, _dollars(revenue), color=GAIN, width=0.75, label="revenue")
        below = [0.0] * len(days)
        for name, values in costs.items():
            down = [-v for v in _dollars(values)]
            axes.bar(x, down, bottom=below, color=COST_COLOURS.get(name, LOSS), width=0.75, label=name)
            below = [b + d for b, d in zip(below, down, strict=True)]
        axes.plot(x, _dollars(profit), color=INK, marker="o", markersize=3, linewidth=1.4, label="profit")
        axes.axhline(0, color=INK, linewidth=0.8)
        axes.set_xticks(list(x)[::3], [d[5:] for d in days][::3])
        axes.yaxis.set_major_formatter(_DOLLARS)
        figure.legend(loc="outside upper left", ncols=5, frameon=False, fontsize=8)
        return figure

    return _cached("days", (days, revenue, costs, profit), draw)


def money_by_source_svg(
    names: Sequence[str], revenue: Sequence[int], costs: Sequence[Decimal], profit: Sequence[Decimal]
) -> SafeString:
    """Per source (marketplace): revenue and costs side by side, profit as a diamond."""

    def draw() -> Figure:
        figure = Figure(figsize=(8.6, 1.2 + 0.45 * len(names)), layout="constrained")
        axes = figure.subplots()
        y = range(len(names))
        axes.barh([i + 0.2 for i in y], _dollars(revenue), height=0.38, color=GAIN, label="revenue")
        axes.barh([i - 0.2 for i in y], _dollars(costs), height=0.38, color=LOSS, label="costs")
        axes.scatter(_dollars(profit), list(y), marker="D", color=INK, zorder=3, label="profit")
        axes.axvline(0, color=INK, linewidth=0.8)
        axes.set_yticks(list(y), list(names))
        axes.invert_yaxis()
        axes.xaxis.set_major_formatter(_DOLLARS)
        figure.legend(loc="outside upper left", ncols=3, frameon=False, fontsize=8)
        return figure

    return _cached("sources", (names, revenue, costs, profit), draw)


def win_rates_svg(
    names: Sequence[str], rates: Sequence[float], lows: Sequence[float], highs: Sequence[float]
) -> SafeString:
    """One row per pair: the first profile's win rate with its 95 % interval; parity dashed."""

    def draw() -> Figure:
        figure = Figure(figsize=(8.6, 0.9 + 0.4 * len(names)), layout="constrained")
        axes = figure.subplots()
        y = list(range(len(names)))
        below = [r - lo for r, lo in zip(rates, lows, strict=True)]
        errors = [below, [h - r for r, h in zip(rates, highs, strict=True)]]
        axes.errorbar(rates, y, xerr=errors, fmt="o", color=INK, ecolor=INK, capsize=3, linewidth=1.2)
        axes.axvline(0.5, color=LOSS, linestyle="--", linewidth=0.9)
        axes.set_xlim(0, 1)
        axes.set_yticks(y, list(names))
        axes.invert_yaxis()
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.0%}"))
        return figure

    return _cached("win_rates", (names, rates, lows, highs), draw)


def win_rate_history_svg(points: Sequence[tuple[int, float, float, float]]) -> SafeString:
    """A pair's win rate after each duel (duel number, rate, low, high) over its interval band."""

    def draw() -> Figure:
        figure = Figure(figsize=(6.4, 2.6))
        axes = figure.subplots()
        duels, rates, lows, highs = zip(*points, strict=True)
        axes.fill_between(duels, lows, highs, color=INK, alpha=0.15, linewidth=0)
        axes.plot(duels, rates, color=INK, linewidth=1.4)
        axes.axhline(0.5, color=LOSS, linestyle="--", linewidth=0.9)
        axes.set_ylim(0, 1)
        axes.set_xlabel("duel")
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.0%}"))
        return figure

    return _cached("history", tuple(points), draw)
