"""The arena's rules, free of the database: who wins a duel, and what the duels say about a pair
of profiles (docs/arena.md)."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from arena.models import WinReason

# The 97.5th percentile of the standard normal distribution: a two-sided 95 % interval.
Z_95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000
_BOOTSTRAP_CHUNK = 250  # resamples drawn at once: bounded memory for long histories


@dataclass(frozen=True)
class Contender:
    profile_id: int
    passed: bool
    profit: Decimal
    cost: Decimal


def winner_select(contenders: Sequence[Contender], *, incumbent_id: int | None) -> tuple[int | None, str]:
    """The winning profile and why: only sides that passed the gate can win; the higher profit wins;
    equal profit goes to the lower cost, then to the incumbent. No side passing: (None, none_passed)."""
    passed = [c for c in contenders if c.passed]
    if not passed:
        return None, WinReason.NONE_PASSED
    if len(passed) == 1:
        return passed[0].profile_id, WinReason.GATE
    best_profit = max(c.profit for c in passed)
    richest = [c for c in passed if c.profit == best_profit]
    if len(richest) == 1:
        return richest[0].profile_id, WinReason.PROFIT
    cheapest_cost = min(c.cost for c in richest)
    cheapest = [c for c in richest if c.cost == cheapest_cost]
    if len(cheapest) == 1:
        return cheapest[0].profile_id, WinReason.COST
    for contender in cheapest:
        if contender.profile_id == incumbent_id:
            return contender.profile_id, WinReason.INCUMBENT
    # Neither is routed (an operator's pairing): the first side keeps it, as stable as any rule.
    return cheapest[0].profile_id, WinReason.INCUMBENT


def wilson_interval(wins: int, trials: int, *, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a win rate; None without trials."""
    if trials <= 0:
        return None
    if not 0 <= wins <= trials:
        raise ValueError(f"{wins} wins out of {trials} trials")
    rate = wins / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (rate + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / trials + z2 / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean_interval(
    values: Sequence[float | Decimal], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of `values` (paired profit differences); None for
    fewer than two values. Seeded: the same duels always give the same interval."""
    data = np.asarray([float(v) for v in values], dtype=float)
    if data.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, _BOOTSTRAP_CHUNK):
        stop = min(start + _BOOTSTRAP_CHUNK, resamples)
        picks = rng.integers(0, data.size, size=(stop - start, data.size))
        means[start:stop] = data[picks].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def promotion_due(*, first_wins: int, second_wins: int, minimum_decisive: int, parity: float = 0.5) -> str | None:
    """ "first" or "second" when that side's win rate interval lies wholly above parity and the pair
    fought at least `minimum_decisive` decisive duels; None otherwise (the incumbent stays)."""
    decisive = first_wins + second_wins
    if decisive < max(minimum_decisive, 1):
        return None
    low, high = wilson_interval(first_wins, decisive)
    if low > parity:
        return "first"
    if high < parity:
        return "second"
    return None
