"""What a model call costs, in exact decimal cents (docs/gateway.md). No floats anywhere."""

from decimal import Decimal, InvalidOperation

from agency.models import ModelDeployment

MILLION = Decimal(1_000_000)
MS_PER_SECOND = Decimal(1000)


def call_cost(*, deployment: ModelDeployment, tokens_in: int, tokens_out: int, latency_ms: int) -> Decimal:
    """Tokens at the deployment's prices per million, plus wall-clock seconds at its GPU-second cost.

    Exact: a 1 500-in / 500-out call at 250 ¢ / 1 000 ¢ per 1M costs 0.875 ¢, not 0.8749999….
    A price that is not set adds nothing (`ModelDeployment.is_priced` decides whether it may run).
    """
    charges = (
        (tokens_in, deployment.price_in_cents_per_1m, MILLION),
        (tokens_out, deployment.price_out_cents_per_1m, MILLION),
        (latency_ms, deployment.gpu_second_cents, MS_PER_SECOND),
    )
    return sum((amount * price / per for amount, price, per in charges if price is not None), Decimal(0))


def provider_cost_cents(usage: dict) -> Decimal | None:
    """The cost the provider reported in `usage.cost` (OpenRouter: US dollars of credit), in cents.

    `usage` must come from a body parsed with `parse_float=Decimal`, so the number is the one on the
    wire. A missing, negative or non-numeric value is no report at all.
    """
    try:
        # Exact for a Decimal, an int or numeric text; None, true/false and anything else raise.
        dollars = Decimal(str(usage.get("cost")))
    except InvalidOperation:
        return None
    if not dollars.is_finite() or dollars < 0:
        return None
    return dollars * 100
