"""Reads of the gateway: routes, the ledger's sums and the breakers' health (docs/gateway.md)."""

from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum

from agency.gateway.errors import GatewayConfigError
from agency.models import BreakerState, Domain, ModelCall, ModelDeployment, Route, Task


def route_named(name: str) -> Route:
    route = Route.objects.filter(name=name).first()
    if route is None:
        raise GatewayConfigError(f"No route named {name!r}.")
    return route


def route_for(*, domain: Domain | None, purpose: str) -> Route:
    """The most specific route for a domain and purpose: (domain, purpose), then (domain, any
    purpose), then (any domain, purpose), then (any, any)."""
    candidates = Route.objects.filter(
        Q(domain=domain) | Q(domain__isnull=True) if domain is not None else Q(domain__isnull=True),
        Q(purpose=purpose) | Q(purpose=""),
    )

    def specificity(route: Route) -> tuple:
        return (route.domain_id is None, route.purpose == "", route.pk)

    found = sorted(candidates, key=specificity)
    if not found:
        raise GatewayConfigError(f"No route for domain {domain} and purpose {purpose!r}.")
    return found[0]


def route_deployments(*, route: Route) -> list[ModelDeployment]:
    """The route's enabled deployments in order, with their providers, in one query."""
    steps = route.steps.filter(deployment__enabled=True).select_related("deployment__provider").order_by("position")
    return [step.deployment for step in steps]


def task_model_cost(*, task: Task) -> Decimal:
    """What the task's model calls cost, every attempt included, in cents."""
    total = ModelCall.objects.filter(task=task).aggregate(total=Sum("cost_cents"))["total"]
    return total if total is not None else Decimal(0)


def model_call_totals(*, calls: QuerySet) -> dict:
    """Cost, provider-reported cost and tokens of `calls`, in one aggregate query."""
    totals = calls.aggregate(
        calls=Count("id"),
        cost_cents=Sum("cost_cents"),
        provider_cost_cents=Sum("provider_cost_cents"),
        tokens_in=Sum("tokens_in"),
        tokens_out=Sum("tokens_out"),
    )
    return {name: value if value is not None else 0 for name, value in totals.items()}


def gateway_health() -> dict:
    """/healthz's view of the gateway: `ok`; `degraded` when some breaker is not closed; `down` when
    every enabled deployment of some route is open (or the route has none)."""
    open_ids = set(
        BreakerState.objects.exclude(status=BreakerState.Status.CLOSED).values_list("deployment_id", flat=True)
    )
    deployments = ModelDeployment.objects.filter(enabled=True).count()
    routes: dict[str, list[int]] = {}
    for name, deployment_id, enabled in Route.objects.values_list(
        "name", "steps__deployment_id", "steps__deployment__enabled"
    ):
        ids = routes.setdefault(name, [])
        if deployment_id is not None and enabled:
            ids.append(deployment_id)
    down = sorted(name for name, ids in routes.items() if all(i in open_ids for i in ids))
    status = "down" if down else ("degraded" if open_ids else "ok")
    return {
        "status": status,
        "deployments": deployments,
        "routes": len(routes),
        "open_breakers": len(open_ids),
        "routes_down": down,
    }
