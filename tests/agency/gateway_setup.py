"""Providers, deployments and routes pointed at local fake servers, for the gateway's tests."""

from decimal import Decimal

from agency.models import ModelDeployment, Provider, Route, RouteStep


def deployment_at(url: str, model: str = "fake-model", price_in="250", price_out="1000", **fields) -> ModelDeployment:
    provider = Provider.objects.create(name=f"p-{Provider.objects.count()}-{model}", kind="local", base_url=url)
    return ModelDeployment.objects.create(
        provider=provider,
        model=model,
        price_in_cents_per_1m=None if price_in is None else Decimal(price_in),
        price_out_cents_per_1m=None if price_out is None else Decimal(price_out),
        **fields,
    )


def route_of(*deployments: ModelDeployment, name: str = "default") -> Route:
    route = Route.objects.create(name=name)
    for position, deployment in enumerate(deployments):
        RouteStep.objects.create(route=route, deployment=deployment, position=position)
    return route
