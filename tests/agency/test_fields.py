"""Keys, tokens and other systems' ids compare exactly on every database (agency.models.fields)."""

import pytest
from django.apps import apps
from django.db import connection

from agency.models import StripeEvent
from agency.models.fields import ExactCharField

pytestmark = pytest.mark.django_db


def test_it_keeps_ids_that_differ_only_in_case_or_trailing_spaces_apart():
    ids = ["evt_Ab", "evt_aB", "evt_ab", "evt_ab "]
    for event_id in ids:  # one unique constraint: on a case-insensitive collation the second one fails
        StripeEvent.objects.create(event_id=event_id, type="checkout.session.completed", outcome="ignored", payload={})
    assert sorted(StripeEvent.objects.values_list("event_id", flat=True)) == sorted(ids)
    assert list(StripeEvent.objects.filter(event_id="evt_ab").values_list("event_id", flat=True)) == ["evt_ab"]


def test_every_exact_column_has_an_exact_collation_in_the_database():
    if connection.vendor == "mysql":
        expected = "utf8mb4_nopad_bin" if connection.mysql_is_mariadb else "utf8mb4_0900_bin"
    else:
        expected = None  # PostgreSQL's and SQLite's defaults compare exactly
    found = {}
    with connection.cursor() as cursor:
        for model in apps.get_models():
            exact = {f.column for f in model._meta.local_fields if isinstance(f, ExactCharField)}
            if exact:
                columns = connection.introspection.get_table_description(cursor, model._meta.db_table)
                found |= {f"{model._meta.db_table}.{c.name}": c.collation for c in columns if c.name in exact}
    assert len(found) >= 10
    assert found == dict.fromkeys(found, expected)
