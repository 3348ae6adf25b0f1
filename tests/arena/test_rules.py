"""The winner rule and the statistics, checked against worked numbers and against scipy."""

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from arena.rules import Contender, bootstrap_mean_interval, promotion_due, wilson_interval, winner_select

D = Decimal
A, B = 1, 2  # profile ids; A is the incumbent unless a test says otherwise


def side(profile_id, *, passed, profit="0", cost="0"):
    return Contender(profile_id, passed, D(profit), D(cost))


# --- The winner table ------------------------------------------------------------------------


def test_only_the_side_that_passed_can_win_even_with_less_profit():
    assert winner_select([side(A, passed=False, profit="900"), side(B, passed=True, profit="-5")], incumbent_id=A) == (
        B,
        "gate",
    )


def test_both_passed_the_higher_profit_wins():
    assert winner_select(
        [side(A, passed=True, profit="100.0000000001", cost="5"), side(B, passed=True, profit="100", cost="1")],
        incumbent_id=B,
    ) == (A, "profit")


def test_equal_profit_goes_to_the_lower_cost():
    assert winner_select(
        [side(A, passed=True, profit="80", cost="20.5"), side(B, passed=True, profit="80", cost="20.4999")],
        incumbent_id=A,
    ) == (B, "cost")


def test_equal_profit_and_cost_goes_to_the_incumbent():
    contenders = [side(A, passed=True, profit="80", cost="20"), side(B, passed=True, profit="80", cost="20")]
    assert winner_select(contenders, incumbent_id=B) == (B, "incumbent")
    assert winner_select(contenders, incumbent_id=A) == (A, "incumbent")


def test_equal_everything_without_an_incumbent_in_the_pair_goes_to_the_first_side():
    contenders = [side(B, passed=True, profit="1"), side(A, passed=True, profit="1")]
    assert winner_select(contenders, incumbent_id=None) == (B, "incumbent")


def test_no_side_passing_means_no_winner():
    assert winner_select([side(A, passed=False, profit="10"), side(B, passed=False, profit="20")], incumbent_id=A) == (
        None,
        "none_passed",
    )


def test_a_failed_side_with_a_tie_is_not_a_tie():
    assert winner_select(
        [side(A, passed=True, profit="10", cost="1"), side(B, passed=False, profit="10", cost="1")], incumbent_id=B
    ) == (A, "gate")


# --- Wilson ----------------------------------------------------------------------------------


def test_wilson_of_14_wins_in_20_worked_by_hand():
    # p = 0.7, z² = 3.8415: centre (0.7 + 0.09604) / 1.19207 = 0.66777, half-width 0.18675
    low, high = wilson_interval(14, 20)
    assert low == pytest.approx(0.4810, abs=5e-4)
    assert high == pytest.approx(0.8545, abs=5e-4)


@pytest.mark.parametrize(("wins", "trials"), [(0, 1), (1, 1), (0, 47), (47, 47), (30, 47), (500, 1000), (3, 7)])
def test_wilson_agrees_with_scipy(wins, trials):
    expected = stats.binomtest(wins, trials).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(wins, trials) == pytest.approx((expected.low, expected.high), abs=1e-9)


def test_wilson_without_trials_is_none_and_refuses_impossible_counts():
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError, match="5 wins out of 4 trials"):
        wilson_interval(5, 4)
    with pytest.raises(ValueError):
        wilson_interval(-1, 4)


# --- Bootstrap -------------------------------------------------------------------------------


def test_bootstrap_interval_agrees_with_scipys_percentile_bootstrap():
    rng = np.random.default_rng(7)
    differences = rng.normal(12.5, 40, size=80)
    ours = bootstrap_mean_interval(differences.tolist(), resamples=4000, seed=1)
    theirs = stats.bootstrap(
        (differences,), np.mean, n_resamples=4000, method="percentile", confidence_level=0.95, random_state=2
    ).confidence_interval
    # Two independent resamplings of the same data: the bounds agree to within resampling noise.
    width = theirs.high - theirs.low
    assert ours[0] == pytest.approx(theirs.low, abs=0.05 * width)
    assert ours[1] == pytest.approx(theirs.high, abs=0.05 * width)
    assert ours[0] < differences.mean() < ours[1]


def test_bootstrap_of_a_constant_is_that_constant_and_is_seeded():
    assert bootstrap_mean_interval([D("2.5")] * 10) == (2.5, 2.5)
    values = [1, 5, -3, 8, 0, 2]
    assert bootstrap_mean_interval(values, seed=3) == bootstrap_mean_interval(values, seed=3)
    assert bootstrap_mean_interval(values, seed=3) != bootstrap_mean_interval(values, seed=4)


def test_a_clean_sweep_tops_out_at_exactly_one():
    assert wilson_interval(47, 47)[1] == 1.0
    assert wilson_interval(0, 47)[0] == 0.0


def test_bootstrap_is_seeded_with_zero_unless_told_otherwise():
    values = [3, -1, 4, 1, -5, 9, 2, 6]
    assert bootstrap_mean_interval(values) == bootstrap_mean_interval(values, seed=0)


def test_a_single_resample_is_the_mean_of_values_drawn_from_the_data():
    low, high = bootstrap_mean_interval([10, 20], resamples=1)
    assert low == high and low in (10.0, 15.0, 20.0)


def test_bootstrap_needs_two_values():
    assert bootstrap_mean_interval([]) is None
    assert bootstrap_mean_interval([3]) is None


def test_bootstrap_in_chunks_gives_the_resamples_asked_for():
    # 1001 resamples cross a chunk boundary; a 99 % interval of a two-valued set is its extremes.
    low, high = bootstrap_mean_interval([0, 1], resamples=1001, level=0.99)
    assert (low, high) == (0.0, 1.0)


# --- Promotion -------------------------------------------------------------------------------


@given(first=st.integers(0, 46), second=st.integers(0, 46))
def test_no_promotion_below_the_duel_minimum_whatever_the_win_rate(first, second):
    if first + second < 47:
        assert promotion_due(first_wins=first, second_wins=second, minimum_decisive=47) is None


@given(first=st.integers(0, 300), second=st.integers(0, 300))
def test_a_promotion_means_the_interval_clears_parity(first, second):
    due = promotion_due(first_wins=first, second_wins=second, minimum_decisive=47)
    if due is None:
        return
    low, high = wilson_interval(first, first + second)
    assert (due == "first" and low > 0.5) or (due == "second" and high < 0.5)


def test_promotion_once_both_conditions_hold():
    # 33 of 47: Wilson [0.560, 0.818] clears 0.5; 32 of 46 would too, but 46 duels are too few.
    assert promotion_due(first_wins=32, second_wins=14, minimum_decisive=47) is None
    assert promotion_due(first_wins=33, second_wins=14, minimum_decisive=47) == "first"
    assert promotion_due(first_wins=14, second_wins=33, minimum_decisive=47) == "second"


def test_enough_duels_but_an_interval_across_parity_keeps_the_incumbent():
    assert promotion_due(first_wins=28, second_wins=22, minimum_decisive=47) is None  # [0.42, 0.69]


def test_a_minimum_of_zero_still_needs_a_duel():
    assert promotion_due(first_wins=0, second_wins=0, minimum_decisive=0) is None
    assert promotion_due(first_wins=5, second_wins=0, minimum_decisive=0) == "first"
