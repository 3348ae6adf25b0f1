"""A standing's figures as the back office writes them (the standings page, the dashboard)."""

from agency.money import dollars
from arena.models import PairStanding


def _interval(low: float | None, high: float | None, shown) -> str:
    return "" if low is None or high is None else f" [{shown(low)}, {shown(high)}]"


def win_rate(standing: PairStanding) -> str:
    """The first profile's share of the decisive duels with its Wilson 95 % interval: "0.667 [0.21, 0.94]"."""
    if not standing.decisive:
        return "—"
    rate = standing.first_wins / standing.decisive
    return f"{rate:.3f}{_interval(standing.win_rate_low, standing.win_rate_high, lambda v: f'{v:.3f}')}"


def profit_difference(standing: PairStanding) -> str:
    """The mean profit of the first minus the second's per duel, in dollars, with its bootstrap interval."""
    if standing.profit_diff_mean_cents is None:
        return "—"
    spread = _interval(standing.profit_diff_low_cents, standing.profit_diff_high_cents, dollars)
    return f"{dollars(standing.profit_diff_mean_cents)}{spread}"
