"""Which profile works a domain's tasks, and its audited changes (docs/agents.md, docs/arena.md)."""

import pytest

from agency.models import AgentProfile, Domain, RoutingChange
from agency.services.routing import (
    RoutingConflict,
    profile_route,
    profile_routed,
    profiles_eligible,
    routing_revert,
)
from tests.agency.factories import domain

pytestmark = pytest.mark.django_db


@pytest.fixture
def profiles():
    baseline, _ = AgentProfile.objects.get_or_create(name="baseline", defaults={"kind": "baseline", "priority": 1000})
    late = AgentProfile.objects.create(name="late", kind="baseline", priority=2000)
    return baseline, late


def test_by_default_the_lowest_priority_of_the_domains_and_the_general_profiles_works(profiles):
    baseline, late = profiles
    legal_only = AgentProfile.objects.create(name="legal-only", kind="llm", priority=500, domain=domain("legal"))
    AgentProfile.objects.create(name="asleep", kind="llm", priority=1, active=False)
    assert profile_routed(domain=domain("legal")) == legal_only
    assert profile_routed(domain=domain("accounting")) == baseline
    assert list(profiles_eligible(domain=domain("accounting"))) == [baseline, late]


def test_equal_priorities_go_by_name(profiles):
    AgentProfile.objects.create(name="b-second", kind="baseline", priority=7)
    first = AgentProfile.objects.create(name="a-first", kind="baseline", priority=7)
    assert profile_routed(domain=domain("legal")) == first


def test_a_promotion_routes_one_domain_and_is_recorded_with_it(profiles):
    baseline, late = profiles
    legal = domain("legal")
    change = profile_route(domain=legal, profile=late, actor="arena", reason="won 40 of 47")
    assert (change.domain, change.from_profile, change.to_profile, change.actor, change.reason) == (
        legal, None, late, "arena", "won 40 of 47")  # fmt: skip
    assert Domain.objects.get(pk=legal.pk).routed_profile == late
    assert profile_routed(domain=Domain.objects.get(pk=legal.pk)) == late
    assert profile_routed(domain=domain("accounting")) == baseline


def test_a_revert_goes_back_to_what_the_domain_had_and_only_the_latest_change_reverts(profiles):
    late = profiles[1]
    third = AgentProfile.objects.create(name="third", kind="baseline", priority=3000)
    legal = domain("legal")
    first = profile_route(domain=legal, profile=late, actor="arena", reason="")
    second = profile_route(domain=legal, profile=third, actor="op", reason="")
    with pytest.raises(RoutingConflict, match=rf"later routing change \(#{second.pk}\)") as refused:
        routing_revert(change=first, actor="op")
    assert refused.value.existing_id == second.pk
    undo = routing_revert(change=second, actor="op", reason="too slow")
    assert (undo.from_profile, undo.to_profile, undo.reverts, undo.reason) == (third, late, second, "too slow")
    assert Domain.objects.get(pk=legal.pk).routed_profile == late
    undo_first = routing_revert(change=undo, actor="op")  # a revert is a change like any other
    assert undo_first.reason == f"reverts change #{undo.pk}"
    assert Domain.objects.get(pk=legal.pk).routed_profile == third


def test_a_change_from_a_stale_view_is_refused_and_writes_nothing(profiles):
    baseline, late = profiles
    seen = domain("legal")
    profile_route(domain=Domain.objects.get(pk=seen.pk), profile=late, actor="arena", reason="")
    with pytest.raises(RoutingConflict, match="changed meanwhile"):
        profile_route(domain=seen, profile=baseline, actor="op", reason="")  # still thinks: priorities
    assert RoutingChange.objects.count() == 1


def test_routing_to_an_inactive_or_foreign_profile_or_to_the_same_one_is_refused(profiles):
    legal = domain("legal")
    asleep = AgentProfile.objects.create(name="asleep", kind="llm", active=False)
    foreign = AgentProfile.objects.create(name="tax", kind="llm", domain=domain("accounting"))
    for profile in (asleep, foreign):
        with pytest.raises(RoutingConflict, match="inactive or does not work legal"):
            profile_route(domain=legal, profile=profile, actor="op", reason="")
    with pytest.raises(RoutingConflict, match="already routed"):
        profile_route(domain=legal, profile=None, actor="op", reason="")
    assert not RoutingChange.objects.exists()


def test_a_routed_profile_switched_off_gives_the_domain_back_to_priorities(profiles):
    baseline, late = profiles
    legal = domain("legal")
    profile_route(domain=legal, profile=late, actor="arena", reason="")
    AgentProfile.objects.filter(pk=late.pk).update(active=False)
    assert profile_routed(domain=Domain.objects.get(pk=legal.pk)) == baseline
