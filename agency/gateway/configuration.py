"""The one-model set-up from the environment (AGENCY_MODEL_*, docs/gateway.md).

Operators with several providers edit them in the admin; a deployment that names one model
in its environment gets a provider `env`, that model, the route `default` (any domain, any
purpose) pointing at it, and the LLM agent profile `llm` (every domain, ahead of the baseline).
Safe to run at every start and from several processes at once.
"""

from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction

from agency.models import AgentProfile, ModelDeployment, Provider, Route, RouteStep

ENV_PROVIDER = "env"
DEFAULT_ROUTE = "default"
ENV_PROFILE = "llm"
ENV_PROFILE_PRIORITY = 100  # ahead of the seeded baseline (1000)


def gateway_configure(
    *, base_url: str, model: str, api_key_env: str, kind: str, price_in: Decimal | None, price_out: Decimal | None
) -> ModelDeployment:
    """Upsert the `env` provider, its deployment of `model` and the `default` route's first step.

    Prices are written as given (None leaves the deployment unpriced, so calls refuse to run
    with a configuration error naming it). Other deployments on the route stay, after it.
    """
    with transaction.atomic():
        provider = _upsert(Provider, {"name": ENV_PROVIDER}, base_url=base_url, kind=kind, api_key_env=api_key_env)
        deployment = _upsert(
            ModelDeployment,
            {"provider": provider, "model": model},
            price_in_cents_per_1m=price_in,
            price_out_cents_per_1m=price_out,
            enabled=True,
        )
        route = _upsert(Route, {"name": DEFAULT_ROUTE}, domain=None, purpose="")
        steps = route.steps.all()
        if not steps.filter(deployment=deployment, position=0).exists():
            # Make room at the front: the configured model is the primary.
            steps.filter(deployment=deployment).delete()
            for step in steps.order_by("-position"):
                RouteStep.objects.filter(pk=step.pk).update(position=step.position + 1)
            RouteStep.objects.create(route=route, deployment=deployment, position=0)
        # The route is left empty on the profile: it follows the routing table, `default` included.
        _upsert(
            AgentProfile, {"name": ENV_PROFILE}, kind=AgentProfile.Kind.LLM, active=True, priority=ENV_PROFILE_PRIORITY
        )
    return deployment


def gateway_configure_from_settings() -> ModelDeployment | None:
    """`gateway_configure` with the AGENCY_MODEL_* settings; nothing at all when no base URL is set."""
    if not settings.AGENCY_MODEL_BASE_URL:
        return None
    return gateway_configure(
        base_url=settings.AGENCY_MODEL_BASE_URL,
        model=settings.AGENCY_MODEL_NAME,
        api_key_env=settings.AGENCY_MODEL_API_KEY_ENV,
        kind=settings.AGENCY_MODEL_KIND,
        price_in=_decimal(settings.AGENCY_MODEL_PRICE_IN_CENTS_PER_1M),
        price_out=_decimal(settings.AGENCY_MODEL_PRICE_OUT_CENTS_PER_1M),
    )


def _decimal(raw: str) -> Decimal | None:
    return Decimal(raw) if raw else None


def _upsert(model, key: dict, **values):
    """The row with natural key `key`, created or updated to `values`; the key's unique constraint
    settles concurrent creators."""
    try:
        with transaction.atomic():
            row, created = model.objects.get_or_create(**key, defaults=values)
    except IntegrityError:
        row, created = model.objects.get(**key), False
    if not created:
        changed = [name for name, value in values.items() if getattr(row, name) != value]
        for name in changed:
            setattr(row, name, values[name])
        if changed:
            row.save(update_fields=changed)
    return row
