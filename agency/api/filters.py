"""Query-string filters shared by the API's list endpoints."""

from datetime import UTC

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField


class _UtcIsoDateTimeField(IsoDateTimeField):
    default_error_messages = {"out_of_range": "Enter a date and time within the years 1 to 9999 in UTC."}

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError(self.error_messages["out_of_range"], code="out_of_range") from None


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time, compared in UTC, that stays within years 1 to 9999 there.

    Converted here, not by the database: SQLite's backend converted it when the query ran, and
    an offset that pushed it past either end (`9999-12-31T23:59:59-23:00`) raised `OverflowError`;
    PostgreSQL refuses offsets beyond ±15:59 (`DataError`). Both were a 500.
    """

    field_class = _UtcIsoDateTimeField


class IdFilter(django_filters.NumberFilter):
    """A row id: a whole number a database key can hold. `1e308` or a 30-digit number is a 400;
    as a plain NumberFilter it reached the database, and SQLite's driver raised `OverflowError`."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)
