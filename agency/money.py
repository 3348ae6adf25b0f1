"""Money as operators read it: amounts are stored and exchanged in cents (the API's `_cents`
contract), and shown and typed in dollars in the back office (docs/console.md)."""

import re
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

_MONEY_NAME = re.compile(r"(^|_)cents($|_)")


def dollars(cents: int | Decimal | float | None, places: int = 6) -> str:
    """`26250` → `$262.50`, `-1999` → `-$19.99`, `Decimal("0.0042")` → `$0.000042`: two decimals,
    more where the amount has fractions of a cent (the ledger prices calls to a millionth of one),
    up to `places` decimals of a dollar."""
    if cents is None:
        return ""
    # Floats are statistics (interval bounds): to the cent is enough for them.
    amount = (Decimal(str(round(cents, 2))) if isinstance(cents, float) else Decimal(cents)) / 100
    amount = amount.quantize(Decimal(f"1e-{places}"))
    digits = max(2, -amount.normalize().as_tuple().exponent)
    return f"{'-' if amount < 0 else ''}${abs(amount):,.{digits}f}"


def is_money(field: models.Field) -> bool:
    """A model field holding an amount of money in cents (`price_cents`, `price_in_cents_per_1m`)."""
    return bool(_MONEY_NAME.search(field.name)) and isinstance(
        field, models.IntegerField | models.DecimalField | models.FloatField
    )


def money_label(field: models.Field) -> str:
    """The field's name for people reading dollars: "price cents" → "price", "input ¢ per 1M
    tokens" → "input $ per 1M tokens"."""
    label = str(field.verbose_name).replace("¢", "$")
    return re.sub(r"\s+", " ", re.sub(r"\bin cents\b|\bcents\b", "", label)).strip()


class DollarsField(forms.Field):
    """A form field for an amount the model keeps in cents, typed and shown in dollars ("262.50",
    "$1,262.50"). It cleans to cents: an `int`, or a `Decimal` when the model keeps fractions of a
    cent (`fraction_digits` of them); validators given in cents (the model field's) apply to cents."""

    widget = forms.TextInput(attrs={"inputmode": "decimal", "size": 12})

    def __init__(self, *, fraction_digits: int = 0, min_value=None, max_value=None, **kwargs):
        # A model DecimalField offers its digits; the limits that matter here are in cents.
        kwargs.pop("max_digits", None), kwargs.pop("decimal_places", None)
        super().__init__(**kwargs)
        self.fraction_digits = fraction_digits
        if min_value is not None:
            self.validators.append(MinValueValidator(min_value))
        if max_value is not None:
            self.validators.append(MaxValueValidator(max_value))

    def prepare_value(self, value):
        if value is None or isinstance(value, str):
            return value  # nothing yet, or what the operator typed (shown back with its error)
        return dollars(value).replace("$", "").replace(",", "")

    def to_python(self, value):
        if value in self.empty_values:
            return None
        text = str(value).strip().replace(",", "").removeprefix("$")
        try:
            cents = Decimal(text) * 100
            exact = cents == cents.quantize(Decimal(f"1e-{self.fraction_digits}"))
        except ArithmeticError:  # not a number, infinite, or more digits than a Decimal holds
            raise ValidationError("Enter an amount in dollars, such as 262.50.", code="invalid") from None
        if not exact:
            places = self.fraction_digits + 2
            raise ValidationError(f"At most {places} digits after the decimal point.", code="precision")
        return int(cents) if self.fraction_digits == 0 else cents
