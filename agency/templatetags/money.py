"""`{{ cents|dollars }}`: an amount in cents as the back office shows money (`agency.money.dollars`)."""

from django import template

from agency.money import dollars as in_dollars

register = template.Library()


@register.filter
def dollars(cents) -> str:
    return in_dollars(cents)
