"""Prices in integer cents (docs/tasks.md).

price = domain base rate * complexity * urgency, minus the repeat-client
discount. Multipliers are exact decimals; a fraction of a cent is rounded
half up, once for the base price and once for the discount, so the quote and
the charge are the same numbers.
"""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

from agency.models import Client, Domain, Task


@dataclass(frozen=True)
class Quote:
    domain: str
    complexity: str
    urgency: str
    base_price_cents: int
    discount_percent: int
    discount_cents: int
    price_cents: int
    currency: str
    is_high_value: bool


def to_cents(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def discount_percent(completed_tasks: int) -> int:
    """The repeat-client discount for a client with this many completed tasks."""
    for minimum, percent in sorted(settings.PRICING_REPEAT_DISCOUNTS, reverse=True):
        if completed_tasks >= minimum:
            return percent
    return 0


def price(*, base_rate_cents: int, complexity: str, urgency: str, completed_tasks: int) -> tuple[int, int, int, int]:
    """(base price, discount percent, discount, price) in cents."""
    try:
        multiplier = settings.PRICING_COMPLEXITY[complexity] * settings.PRICING_URGENCY[urgency]
    except KeyError as missing:
        raise ValueError(f"Unknown complexity or urgency: {missing}") from None
    base = to_cents(Decimal(base_rate_cents) * multiplier)
    percent = discount_percent(completed_tasks)
    discount = to_cents(Decimal(base) * percent / 100)
    return base, percent, discount, base - discount


def completed_tasks_of(client_email: str | None) -> int:
    if not client_email:
        return 0
    normalized = Client.normalize_email(client_email)
    return Task.objects.filter(client__email_normalized=normalized, status=Task.Status.COMPLETED).count()


def quote(*, domain: Domain, complexity: str, urgency: str, client_email: str | None = None) -> Quote:
    base, percent, discount, final = price(
        base_rate_cents=domain.base_rate_cents,
        complexity=complexity,
        urgency=urgency,
        completed_tasks=completed_tasks_of(client_email),
    )
    return Quote(
        domain=domain.slug,
        complexity=complexity,
        urgency=urgency,
        base_price_cents=base,
        discount_percent=percent,
        discount_cents=discount,
        price_cents=final,
        currency=domain.currency,
        is_high_value=final >= settings.HIGH_VALUE_THRESHOLD_CENTS,
    )
