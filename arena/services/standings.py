"""Standings per pair of profiles and domain, and the promotions they lead to (docs/arena.md).

A standing is recomputed from the decided competitions each time one of them is decided, under a
row lock on the standing: two decisions of one pair take turns, and the second sees the first's
duel. Nothing is counted incrementally, so a refresh run twice gives the same row.
"""

from collections import defaultdict
from decimal import Decimal

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction

from agency.models import AgentProfile, Domain, RoutingChange
from agency.services.routing import RoutingConflict, profile_route, profile_routed, routing_revert
from arena.models import DECISIVE, TIED, ArenaResult, Competition, PairStanding, WinReason, pair_key
from arena.rules import bootstrap_mean_interval, promotion_due, wilson_interval

logger = structlog.get_logger(__name__)

DONE = (Competition.Status.DECIDED, Competition.Status.NO_WINNER)


def _standing_locked(*, domain_id: int, first_id: int, second_id: int) -> PairStanding:
    try:
        with transaction.atomic():
            PairStanding.objects.get_or_create(domain_id=domain_id, first_id=first_id, second_id=second_id)
    except IntegrityError:
        pass  # created by a concurrent refresh
    return PairStanding.objects.select_for_update().get(domain_id=domain_id, first_id=first_id, second_id=second_id)


def duels(*, domain_id: int, first_id: int, second_id: int):
    """The decided competitions of the pair in the domain, oldest first."""
    return Competition.objects.filter(
        domain_id=domain_id, pair_key=pair_key(first_id, second_id), status__in=DONE
    ).order_by("decided_at", "pk")


def profit_differences(*, domain_id: int, first_id: int, second_id: int) -> list[Decimal]:
    """first's profit minus second's, one per decided competition, oldest first."""
    competitions = duels(domain_id=domain_id, first_id=first_id, second_id=second_id)
    profits: dict[int, dict[int, Decimal]] = defaultdict(dict)
    rows = ArenaResult.objects.filter(competition__in=competitions).values_list(
        "competition_id", "profile_id", "profit_cents"
    )
    for competition_id, profile_id, profit in rows:
        profits[competition_id][profile_id] = profit
    ordered = competitions.values_list("pk", flat=True)
    return [
        profits[pk][first_id] - profits[pk][second_id]
        for pk in ordered
        if first_id in profits[pk] and second_id in profits[pk]
    ]


def standing_refresh(*, domain_id: int, pair: tuple[int, int]) -> PairStanding:
    """Recount the pair's standing in the domain and promote a profile when the evidence says so."""
    first_id, second_id = sorted(pair)
    with transaction.atomic():
        standing = _standing_locked(domain_id=domain_id, first_id=first_id, second_id=second_id)
        counts = defaultdict(int)
        for winner_id, reason in duels(domain_id=domain_id, first_id=first_id, second_id=second_id).values_list(
            "winner_id", "reason"
        ):
            if reason in DECISIVE:
                counts["first_wins" if winner_id == first_id else "second_wins"] += 1
            elif reason in TIED:
                counts["ties"] += 1
            elif reason == WinReason.NONE_PASSED:
                counts["none_passed"] += 1
        for name in ("first_wins", "second_wins", "ties", "none_passed"):
            setattr(standing, name, counts[name])
        interval = wilson_interval(standing.first_wins, standing.decisive)
        standing.win_rate_low, standing.win_rate_high = interval or (None, None)
        differences = profit_differences(domain_id=domain_id, first_id=first_id, second_id=second_id)
        standing.profit_diff_mean_cents = (
            (sum(differences) / len(differences)).quantize(Decimal("0.0000000001")) if differences else None
        )
        spread = bootstrap_mean_interval(differences, seed=domain_id * 1_000_003 + first_id * 1_009 + second_id)
        standing.profit_diff_low_cents, standing.profit_diff_high_cents = spread or (None, None)
        _promote_if_due(standing)
        standing.save()
    return standing


def _promotion_reverted_elsewhere(standing: PairStanding) -> bool:
    """The pair's promotion was undone outside the arena (the routing changes' own revert): the
    operator's word holds as if they had reverted it here."""
    change = standing.promotion_change
    return (
        standing.promotion == PairStanding.Promotion.PROMOTED
        and change is not None
        and RoutingChange.objects.filter(reverts=change).exists()
    )


def _promote_if_due(standing: PairStanding) -> None:
    """Route the domain to the profile the duels favour, when the other one of the pair is the
    incumbent and no operator is holding the pair back."""
    if _promotion_reverted_elsewhere(standing):
        standing.promotion = PairStanding.Promotion.HELD
    if standing.promotion == PairStanding.Promotion.HELD:
        return
    due = promotion_due(
        first_wins=standing.first_wins,
        second_wins=standing.second_wins,
        minimum_decisive=settings.ARENA_PROMOTION_MIN_DUELS,
    )
    if due is None:
        return
    favoured_id, other_id = (
        (standing.first_id, standing.second_id) if due == "first" else (standing.second_id, standing.first_id)
    )
    domain = Domain.objects.get(pk=standing.domain_id)
    incumbent = profile_routed(domain=domain)
    if incumbent is None or incumbent.pk != other_id:
        return  # already routed, or a third profile is routed: nothing this pair can decide
    favoured = AgentProfile.objects.get(pk=favoured_id)
    wins = standing.first_wins if due == "first" else standing.second_wins
    low, high = (
        (standing.win_rate_low, standing.win_rate_high)
        if due == "first"
        else (1 - standing.win_rate_high, 1 - standing.win_rate_low)
    )
    try:
        change = profile_route(
            domain=domain,
            profile=favoured,
            actor="arena",
            reason=(
                f"{favoured.name} won {wins} of {standing.decisive} decisive duels against {incumbent.name}; "
                f"win rate 95 % interval [{low:.3f}, {high:.3f}]"
            ),
        )
    except RoutingConflict as exc:
        logger.warning("arena_promotion_refused", standing_id=standing.pk, reason=str(exc))
        return
    standing.promotion = PairStanding.Promotion.PROMOTED
    standing.promotion_change = change
    logger.info("arena_promoted", domain=domain.slug, profile=favoured.name, routing_change_id=change.pk)


def promotion_revert(*, standing: PairStanding, actor: str, note: str = "") -> RoutingChange:
    """An operator undoes the pair's promotion: the domain's routing goes back, and the pair is held
    (no automatic promotion) until the operator releases it."""
    if standing.promotion != PairStanding.Promotion.PROMOTED or standing.promotion_change is None:
        raise RoutingConflict("This pair has no promotion to revert.", existing_id=standing.pk)
    with transaction.atomic():
        if _promotion_reverted_elsewhere(standing):  # routing is back already: only hold the pair
            change = RoutingChange.objects.get(reverts=standing.promotion_change)
        else:
            change = routing_revert(change=standing.promotion_change, actor=actor, reason=note)
        # No compare-and-set needed here: of two reverts of one promotion, routing_revert lets one through.
        PairStanding.objects.filter(pk=standing.pk).update(promotion=PairStanding.Promotion.HELD)
    standing.promotion = PairStanding.Promotion.HELD
    return change


def promotion_release(*, standing: PairStanding, actor: str) -> None:
    """Let the arena promote within this pair again (it acts at the pair's next decision)."""
    if not PairStanding.objects.filter(pk=standing.pk, promotion=PairStanding.Promotion.HELD).update(
        promotion=PairStanding.Promotion.WATCHING
    ):
        raise RoutingConflict("This pair is not held.", existing_id=standing.pk)
    standing.promotion = PairStanding.Promotion.WATCHING
    logger.info("arena_promotion_released", standing_id=standing.pk, actor=actor)


def promotion_make(*, standing: PairStanding, profile: AgentProfile, actor: str, note: str = "") -> RoutingChange:
    """An operator promotes one profile of the pair into routing now, whatever the duels say so far."""
    if profile.pk not in (standing.first_id, standing.second_id):
        raise RoutingConflict(f"{profile.name} is not one of this pair.", existing_id=standing.pk)
    domain = Domain.objects.get(pk=standing.domain_id)
    with transaction.atomic():
        change = profile_route(domain=domain, profile=profile, actor=actor, reason=note or "promoted by an operator")
        PairStanding.objects.filter(pk=standing.pk).update(
            promotion=PairStanding.Promotion.PROMOTED, promotion_change=change
        )
    standing.promotion, standing.promotion_change = PairStanding.Promotion.PROMOTED, change
    return change
