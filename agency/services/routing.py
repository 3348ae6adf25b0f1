"""Which agent profile works a domain's tasks, and the audited changes of it (docs/agents.md).

By default a task gets the active profile of its domain (or of every domain) with the lowest
`priority`. The arena may *promote* a profile for one domain; the promotion is a `RoutingChange`
row written with it, and an operator can revert it (another row). Both are compare-and-set on the
domain's `routed_profile`, so of two concurrent changes from the same state one wins.
"""

from django.db import transaction
from django.db.models import Q

from agency.errors import DomainError
from agency.models import AgentProfile, Domain, RoutingChange


class RoutingConflict(DomainError):
    code = "routing_conflict"


def profiles_eligible(*, domain: Domain):
    """Active profiles that may work `domain`'s tasks, in routing order (priority, then name)."""
    return (
        AgentProfile.objects.filter(Q(domain=domain.pk) | Q(domain__isnull=True), active=True)
        .select_related("route")
        .order_by("priority", "name")
    )


def profile_routed(*, domain: Domain) -> AgentProfile | None:
    """The profile a task of `domain` gets: the promoted one while it is active and still covers
    the domain, else the first eligible one by priority."""
    eligible = profiles_eligible(domain=domain)
    if domain.routed_profile_id is not None:
        promoted = eligible.filter(pk=domain.routed_profile_id).first()
        if promoted is not None:
            return promoted
    return eligible.first()


def profile_route(*, domain: Domain, profile: AgentProfile | None, actor: str, reason: str) -> RoutingChange:
    """Route `domain` to `profile` (None: back to priorities), from the routing the caller saw."""
    if profile is not None and not profiles_eligible(domain=domain).filter(pk=profile.pk).exists():
        raise RoutingConflict(f"Profile {profile.name} is inactive or does not work {domain.slug} tasks.")
    return _change(domain=domain, to=profile, actor=actor, reason=reason, reverts=None)


def routing_revert(*, change: RoutingChange, actor: str, reason: str = "") -> RoutingChange:
    """Undo `change`: the domain goes back to the profile it had before. Only the domain's latest
    change can be undone, once."""
    latest = (
        RoutingChange.objects.filter(domain=change.domain_id).order_by("-created_at", "-id").first()
    )  # `change` at least
    if latest.pk != change.pk:
        raise RoutingConflict(
            f"A later routing change (#{latest.pk}) exists; revert that one first.", existing_id=latest.pk
        )
    domain = Domain.objects.get(pk=change.domain_id)
    reason = reason or f"reverts change #{change.pk}"
    return _change(domain=domain, to=change.from_profile, actor=actor, reason=reason, reverts=change)


def _change(
    *, domain: Domain, to: AgentProfile | None, actor: str, reason: str, reverts: RoutingChange | None
) -> RoutingChange:
    seen = domain.routed_profile_id
    to_id = to.pk if to is not None else None
    if seen == to_id:
        raise RoutingConflict(f"{domain.slug} is already routed that way.")
    with transaction.atomic():
        if not Domain.objects.filter(pk=domain.pk, routed_profile=seen).update(routed_profile=to_id):
            raise RoutingConflict(f"The routing of {domain.slug} changed meanwhile; look again.")
        change = RoutingChange.objects.create(
            domain=domain, from_profile_id=seen, to_profile_id=to_id, actor=actor, reason=reason, reverts=reverts
        )
    domain.routed_profile_id = to_id
    return change
