"""`{{ cents|dollars }}`: an amount in cents as the back office shows money (`agency.money.dollars`)."""

from django import template

from agency.money import dollars as in_dollars

register = template.Library()


@register.filter
def dollars(cents, places: int = 6) -> str:
    """`{{ total|dollars:4 }}`: at most 4 decimals of a dollar (a hundredth of a cent)."""
    return in_dollars(cents, int(places))
