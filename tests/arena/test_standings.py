"""Standings recounted from decided competitions, promotions into routing and an operator's revert
(docs/arena.md)."""

from decimal import Decimal

import pytest

from agency.models import AgentProfile, RoutingChange
from agency.pipeline import profile_for
from agency.services.routing import RoutingConflict
from arena.models import PairStanding
from arena.rules import wilson_interval
from arena.services.competitions import competition_decide
from arena.services.standings import promotion_make, promotion_release, promotion_revert, standing_refresh
from tests.agency.factories import TaskFactory, domain
from tests.arena.factories import CompetitionFactory, ProfileFactory, duel, result_add

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def pair():
    """The seeded baseline (routed by priority) and a challenger behind it, in data analysis."""
    baseline, _ = AgentProfile.objects.get_or_create(name="baseline", defaults={"kind": "baseline", "priority": 1000})
    return baseline, ProfileFactory(name="challenger")


def fight(pair, *, a_passed=True, b_passed=True, a_profit="100", b_profit="100", slug="data_analysis"):
    """One replay competition of the pair (a = baseline), decided by the join."""
    competition = CompetitionFactory(
        task=TaskFactory(status="completed", domain=domain(slug)), profile_a=pair[0], profile_b=pair[1]
    )
    competition.incumbent = pair[0]
    competition.save()
    result_add(competition, "a", passed=a_passed, revenue=1000 if a_passed else 0,
               model_cost=str(D(1000 if a_passed else 0) - D(a_profit)))  # fmt: skip
    result_add(competition, "b", passed=b_passed, revenue=1000 if b_passed else 0,
               model_cost=str(D(1000 if b_passed else 0) - D(b_profit)))  # fmt: skip
    competition_decide(competition_id=competition.pk)
    return competition


def standing(pair, slug="data_analysis") -> PairStanding:
    first, second = sorted(pair, key=lambda p: p.pk)
    return PairStanding.objects.get(domain=domain(slug), first=first, second=second)


def test_it_counts_wins_ties_and_duels_nobody_passed_from_firsts_side(pair):
    baseline = pair[0]
    fight(pair, a_profit="100", b_profit="90")  # baseline by profit
    fight(pair, a_passed=False, b_profit="5")  # challenger by the gate
    fight(pair, a_profit="50", b_profit="50")  # equal profit and cost: a tie, kept by the incumbent
    fight(pair, a_profit="7", b_profit="7")
    fight(pair, a_passed=False, b_passed=False)
    fight(pair, a_passed=False, b_passed=False)
    row = standing(pair)
    assert (row.first, row.first_wins, row.second_wins, row.ties, row.none_passed) == (baseline, 1, 1, 2, 2)
    assert (row.win_rate_low, row.win_rate_high) == pytest.approx(wilson_interval(1, 2))


def test_it_keeps_each_domain_apart(pair):
    fight(pair, a_profit="100", b_profit="90")
    fight(pair, a_profit="100", b_profit="90", slug="legal")
    assert standing(pair).first_wins == 1
    assert standing(pair, "legal").first_wins == 1


def test_the_mean_profit_difference_is_firsts_profit_less_seconds_exactly(pair):
    fight(pair, a_profit="10.0000000001", b_profit="4")
    fight(pair, a_profit="1", b_profit="3")
    row = standing(pair)
    # (6.0000000001 + (-2)) / 2
    assert row.profit_diff_mean_cents == D("2.0000000000")  # 4.0000000001 / 2, to ten places (half even)
    assert row.profit_diff_low_cents == pytest.approx(-2) and row.profit_diff_high_cents == pytest.approx(6)


def test_a_refresh_run_twice_gives_the_same_row(pair):
    for a_profit, b_profit in (("10", "4"), ("3", "4"), ("12.5", "1"), ("0", "9"), ("7", "2"), ("5", "5.25")):
        fight(pair, a_profit=a_profit, b_profit=b_profit)
    before = PairStanding.objects.values().get()
    baseline, challenger = pair
    standing_refresh(domain_id=domain("data_analysis").pk, pair=(challenger.pk, baseline.pk))
    after = PairStanding.objects.values().get()
    before.pop("updated_at"), after.pop("updated_at")
    assert after == before


def test_the_challenger_is_promoted_once_it_has_enough_decisive_wins_and_not_before(settings, pair):
    settings.ARENA_PROMOTION_MIN_DUELS = 4
    baseline, challenger = pair
    for _ in range(3):  # 3 of 3: too few duels (and Wilson [0.44, 1] still spans parity)
        fight(pair, a_profit="10", b_profit="20")
    fight(pair, a_passed=False, b_passed=False)  # not decisive: still too few
    assert (standing(pair).promotion, RoutingChange.objects.count()) == ("watching", 0)
    assert profile_for(task=TaskFactory(domain=domain("data_analysis"))) == baseline
    fight(pair, a_profit="10", b_profit="20")  # 4 of 4: Wilson [0.51, 1]
    row = standing(pair)
    change = RoutingChange.objects.get()
    assert (row.promotion, row.promotion_change) == ("promoted", change)
    assert (change.actor, change.from_profile, change.to_profile) == ("arena", None, challenger)
    # The challenger is `second` (the seeded baseline has the smaller id): its interval is the mirror of first's.
    assert change.reason == (
        "challenger won 4 of 4 decisive duels against baseline; win rate 95 % interval [0.510, 1.000]"
    )
    assert profile_for(task=TaskFactory(domain=domain("data_analysis"))) == challenger
    assert profile_for(task=TaskFactory(domain=domain("legal"))) == baseline  # one domain only


def test_enough_duels_across_parity_promote_nobody(settings, pair):
    settings.ARENA_PROMOTION_MIN_DUELS = 4
    for a_profit in ("10", "30", "10", "30", "10", "30"):
        fight(pair, a_profit=a_profit, b_profit="20")
    assert standing(pair).promotion == "watching"
    assert not RoutingChange.objects.exists()


def test_an_operators_revert_restores_routing_and_holds_the_pair(settings, pair):
    settings.ARENA_PROMOTION_MIN_DUELS = 4
    baseline, challenger = pair
    for _ in range(4):
        fight(pair, a_profit="10", b_profit="20")
    change = promotion_revert(standing=standing(pair), actor="op", note="the clients complained")
    assert (change.actor, change.to_profile, change.reverts, change.reason) == (
        "op", None, standing(pair).promotion_change, "the clients complained")  # fmt: skip
    assert profile_for(task=TaskFactory(domain=domain("data_analysis"))) == baseline
    fight(pair, a_profit="10", b_profit="20")  # more evidence, but the operator's word holds
    assert standing(pair).promotion == "held"
    assert RoutingChange.objects.count() == 2
    promotion_release(standing=standing(pair), actor="op")
    fight(pair, a_profit="10", b_profit="20")
    assert standing(pair).promotion == "promoted"
    assert profile_for(task=TaskFactory(domain=domain("data_analysis"))) == challenger


def test_revert_and_release_refuse_what_is_not_there(pair):
    fight(pair)
    with pytest.raises(RoutingConflict, match="no promotion") as refused:
        promotion_revert(standing=standing(pair), actor="op")
    assert refused.value.existing_id == standing(pair).pk
    with pytest.raises(RoutingConflict, match="not held") as refused:
        promotion_release(standing=standing(pair), actor="op")
    assert refused.value.existing_id == standing(pair).pk


def test_a_released_pair_has_no_promotion_left_to_revert(pair):
    promotion_make(standing=standing_of_one_duel(pair), profile=pair[1], actor="op")
    promotion_revert(standing=standing(pair), actor="op")
    row = standing(pair)
    promotion_release(standing=row, actor="op")
    assert row.promotion == "watching" and row.promotion_change is not None  # the last promotion, for the record
    with pytest.raises(RoutingConflict, match="no promotion"):
        promotion_revert(standing=row, actor="op")


def test_reverting_or_releasing_one_pair_leaves_the_others_alone(pair):
    other_pair = (pair[0], ProfileFactory(name="other"))
    for each in (pair, other_pair):
        promotion_make(standing=standing_of_one_duel(each, slug="legal" if each is other_pair else "data_analysis"),
                       profile=each[1], actor="op")  # fmt: skip
    row = standing(pair)
    promotion_revert(standing=row, actor="op")
    assert row.promotion == "held"  # the caller's object too
    assert (standing(pair).promotion, standing(other_pair, "legal").promotion) == ("held", "promoted")
    promotion_revert(standing=standing(other_pair, "legal"), actor="op")
    promotion_release(standing=row, actor="op")
    assert row.promotion == "watching"
    assert (standing(pair).promotion, standing(other_pair, "legal").promotion) == ("watching", "held")


def standing_of_one_duel(pair, slug="data_analysis") -> PairStanding:
    fight(pair, slug=slug)
    return standing(pair, slug)


def test_an_operator_promotes_by_hand_and_a_third_profile_is_refused(pair):
    challenger = pair[1]
    fight(pair)
    row = standing(pair)
    change = promotion_make(standing=row, profile=challenger, actor="op")
    assert (change.to_profile, change.actor, change.reason) == (challenger, "op", "promoted by an operator")
    assert (row.promotion, row.promotion_change) == ("promoted", change)
    assert (standing(pair).promotion, standing(pair).promotion_change) == ("promoted", change)
    with pytest.raises(RoutingConflict, match="not one of this pair") as refused:
        promotion_make(standing=standing(pair), profile=ProfileFactory(), actor="op")
    assert refused.value.existing_id == row.pk


def test_a_promoted_profile_that_goes_inactive_gives_the_domain_back_to_priorities(settings, pair):
    baseline, challenger = pair
    fight(pair)
    promotion_make(standing=standing(pair), profile=challenger, actor="op")
    AgentProfile.objects.filter(pk=challenger.pk).update(active=False)
    assert profile_for(task=TaskFactory(domain=domain("data_analysis"))) == baseline


def test_a_pair_where_a_third_profile_is_routed_promotes_nobody(settings, pair):
    settings.ARENA_PROMOTION_MIN_DUELS = 4
    ProfileFactory(name="third", priority=1)  # routed by priority, not in the pair
    for _ in range(4):  # 4 of 4: due, were the baseline routed
        fight(pair, a_profit="10", b_profit="20")
    assert standing(pair).promotion == "watching"
    assert not RoutingChange.objects.exists()


def test_duels_marked_by_hand_count_like_decided_ones(pair):
    competition = CompetitionFactory(
        task=TaskFactory(status="completed", domain=domain("data_analysis")), profile_a=pair[0], profile_b=pair[1]
    )
    result_add(competition, "a", passed=True, revenue=10)
    result_add(competition, "b", passed=False)
    duel(competition, winner=pair[0], reason="gate")
    row = standing_refresh(domain_id=competition.domain_id, pair=(pair[0].pk, pair[1].pk))
    assert (row.first_wins, row.second_wins) == ((1, 0) if pair[0].pk < pair[1].pk else (0, 1))


def test_a_promotion_reverted_from_the_routing_changes_holds_the_pair_as_a_revert_here_would(settings, pair):
    from agency.services.routing import routing_revert

    settings.ARENA_PROMOTION_MIN_DUELS = 4
    baseline = pair[0]
    for _ in range(4):
        fight(pair, a_profit="10", b_profit="20")
    routing_revert(change=standing(pair).promotion_change, actor="op")  # the core's own revert
    fight(pair, a_profit="10", b_profit="20")  # the arena does not promote again behind the operator's back
    assert standing(pair).promotion == "held"
    assert profile_for(task=TaskFactory(domain=domain("data_analysis"))) == baseline
    assert RoutingChange.objects.count() == 2


def test_reverting_here_after_a_revert_from_the_routing_changes_only_holds_the_pair(settings, pair):
    from agency.services.routing import routing_revert

    settings.ARENA_PROMOTION_MIN_DUELS = 4
    for _ in range(4):
        fight(pair, a_profit="10", b_profit="20")
    undo = routing_revert(change=standing(pair).promotion_change, actor="op")
    assert promotion_revert(standing=standing(pair), actor="op2") == undo
    assert (standing(pair).promotion, RoutingChange.objects.count()) == ("held", 2)
    promotion_release(standing=standing(pair), actor="op")


def test_the_first_of_the_pair_is_promoted_back_when_it_beats_the_routed_second(settings, pair):
    settings.ARENA_PROMOTION_MIN_DUELS = 4
    baseline, challenger = pair
    fight(pair)
    promotion_make(standing=standing(pair), profile=challenger, actor="op", note="try it")
    for _ in range(4):
        fight(pair, a_profit="20", b_profit="10")
    change = RoutingChange.objects.order_by("pk").last()
    assert (change.actor, change.from_profile, change.to_profile) == ("arena", challenger, baseline)
    assert (
        change.reason == "baseline won 4 of 4 decisive duels against challenger; win rate 95 % interval [0.510, 1.000]"
    )
    assert (standing(pair).promotion, standing(pair).promotion_change) == ("promoted", change)
    assert RoutingChange.objects.get(actor="op").reason == "try it"


def test_pairs_sharing_a_profile_in_one_domain_keep_their_own_standings(pair):
    baseline, challenger = pair
    third = ProfileFactory(name="third")
    fight(pair, a_profit="20", b_profit="10")
    fight((baseline, third), a_profit="10", b_profit="20")
    fight((baseline, third), a_profit="10", b_profit="20")
    for _ in range(3):
        fight((challenger, third), a_profit="20", b_profit="10")
    assert (standing(pair).first_wins, standing(pair).second_wins) == (1, 0)
    assert (standing((baseline, third)).first_wins, standing((baseline, third)).second_wins) == (0, 2)
    assert (standing((challenger, third)).first_wins, standing((challenger, third)).second_wins) == (3, 0)
    assert standing(pair).profit_diff_mean_cents == 10


def test_a_competition_still_running_does_not_count(pair):
    fight(pair, a_profit="20", b_profit="10")
    running = CompetitionFactory(
        task=TaskFactory(status="completed", domain=domain("data_analysis")), profile_a=pair[0], profile_b=pair[1]
    )
    result_add(running, "a", passed=True, revenue=1000, model_cost="0")
    result_add(running, "b", passed=False)
    row = standing_refresh(domain_id=running.domain_id, pair=(pair[0].pk, pair[1].pk))
    assert (row.first_wins, row.second_wins, row.profit_diff_mean_cents) == (1, 0, 10)


def test_the_promoted_sides_interval_is_recorded_when_the_other_side_won_some(settings, pair):
    settings.ARENA_PROMOTION_MIN_DUELS = 10
    fight(pair, a_profit="20", b_profit="10")  # the baseline (first) wins one
    for _ in range(9):
        fight(pair, a_profit="10", b_profit="20")
    # first: 1 of 10, Wilson [0.0179, 0.4042]; the challenger's is its mirror
    assert RoutingChange.objects.get().reason == (
        "challenger won 9 of 10 decisive duels against baseline; win rate 95 % interval [0.596, 0.982]"
    )
