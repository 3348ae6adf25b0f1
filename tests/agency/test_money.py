"""Money in dollars in the back office, cents everywhere else (docs/console.md)."""

import re
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import models

from agency.models import Domain, ModelDeployment, Task
from agency.money import DollarsField, dollars, is_money, money_label
from tests.agency.factories import TaskFactory, domain


@pytest.mark.parametrize(
    ("cents", "shown"),
    [
        (26250, "$262.50"), (0, "$0.00"), (-1999, "-$19.99"), (123456789, "$1,234,567.89"), (5, "$0.05"),
        (Decimal("0.0042"), "$0.000042"), (Decimal("1.2500000000"), "$0.0125"), (Decimal("12.5"), "$0.125"),
        (Decimal("0.00000001"), "$0.00"), (Decimal("-0.00000001"), "$0.00"), (12.345, "$0.1235"), (None, ""),
    ],
)  # fmt: skip
def test_it_writes_cents_as_dollars_with_fractions_of_a_cent_where_there_are_some(cents, shown):
    assert dollars(cents) == shown


def test_it_stops_at_the_places_asked_for():
    assert dollars(Decimal("32811.9999938"), places=4) == "$328.12"
    assert dollars(Decimal("1.2345"), places=4) == "$0.0123"


@pytest.mark.parametrize(
    ("typed", "cents"), [("262.50", 26250), ("$1,262.50", 126250), (" 7 ", 700), ("0.05", 5), ("", None)]
)
def test_a_dollars_field_cleans_to_whole_cents(typed, cents):
    assert DollarsField(required=False).clean(typed) == cents


@pytest.mark.parametrize("typed", ["1.234", "abc", "NaN", "Infinity", "1e999999999"])
def test_a_dollars_field_refuses_what_is_not_an_amount_in_cents(typed):
    with pytest.raises(ValidationError):
        DollarsField().clean(typed)


def test_a_dollars_field_keeps_the_fractions_its_model_keeps():
    assert DollarsField(fraction_digits=4).clean("0.000125") == Decimal("0.0125")
    with pytest.raises(ValidationError):
        DollarsField(fraction_digits=4).clean("0.0000001")


def test_a_dollars_field_checks_the_model_limits_in_cents():
    with pytest.raises(ValidationError):
        DollarsField(min_value=0).clean("-0.01")


@pytest.mark.django_db
def test_the_task_list_and_page_show_prices_in_dollars(admin_client):
    task = TaskFactory(base_price_cents=30000, discount_cents=3750, price_cents=26250)
    listed = admin_client.get("/admin/agency/task/").content.decode()
    assert '<td class="field-price_cents_shown">$262.50</td>' in listed
    assert re.search(
        r'class="sortable column-price_cents_shown">\s*<div class="text"><a href="\?o=\d+">Price</a>', listed
    )
    page = admin_client.get(f"/admin/agency/task/{task.pk}/change/").content.decode()
    assert "$300.00" in page and "$37.50" in page and "26250" not in page


@pytest.mark.django_db
def test_an_operator_types_a_domain_rate_in_dollars(admin_client):
    legal = domain("legal")
    form = {"name": legal.name, "slug": legal.slug, "base_rate_cents": "$1,250.75", "currency": "USD", "active": "on"}
    response = admin_client.post(f"/admin/agency/domain/{legal.pk}/change/", form)
    assert response.status_code == 302
    assert Domain.objects.get(pk=legal.pk).base_rate_cents == 125075
    page = admin_client.get(f"/admin/agency/domain/{legal.pk}/change/").content.decode()
    assert 'value="1250.75"' in page and "Base rate (USD)" in page


@pytest.mark.django_db
def test_a_trace_id_links_to_the_trace_search(admin_client):
    task = TaskFactory()
    Task.objects.filter(pk=task.pk).update(trace_id="ab" * 16)
    page = admin_client.get(f"/admin/agency/task/{task.pk}/change/").content.decode()
    assert f'<a href="/admin/traces/?trace_id={"ab" * 16}" class="trace-link">{"ab" * 16}</a>' in page


def test_it_shows_six_decimals_of_a_dollar_unless_asked_otherwise():
    assert dollars(Decimal("0.0001")) == "$0.000001"
    assert dollars(Decimal("0.00001")) == "$0.00"  # a ten-millionth of a dollar


def test_only_amount_fields_named_in_cents_are_money():
    assert is_money(Task._meta.get_field("price_cents"))
    assert is_money(ModelDeployment._meta.get_field("price_in_cents_per_1m"))
    assert not is_money(Task._meta.get_field("attempts"))  # a number, not cents
    assert not is_money(models.CharField(name="note_cents"))  # cents in the name, not an amount
    assert not is_money(models.IntegerField(name="percents"))


@pytest.mark.parametrize(
    ("verbose_name", "label"),
    [("price cents", "price"), ("price in cents per 1M tokens", "price per 1M tokens"),
     ("input ¢ per 1M tokens", "input $ per 1M tokens"), ("cost  cents", "cost")],
)  # fmt: skip
def test_a_money_label_drops_the_cents(verbose_name, label):
    assert money_label(models.IntegerField(name="x_cents", verbose_name=verbose_name)) == label


def test_a_dollars_field_shows_cents_as_dollars_and_what_was_typed_as_typed():
    field = DollarsField()
    assert field.prepare_value(26250) == "262.50"
    assert field.prepare_value(Decimal("0.0125")) == "0.000125"
    assert field.prepare_value("12.3x") == "12.3x"  # typed, refused, shown back
    assert field.prepare_value(None) is None


def test_a_dollars_field_cleans_to_an_int_where_the_model_keeps_whole_cents():
    assert type(DollarsField().clean("262.50")) is int
    assert type(DollarsField(fraction_digits=1).clean("0.105")) is Decimal


@pytest.mark.parametrize(("typed", "code"), [("$$5", "invalid"), ("5$", "invalid"), ("1.234", "precision")])
def test_a_dollars_field_says_why_it_refuses(typed, code):
    with pytest.raises(ValidationError) as refused:
        DollarsField().clean(typed)
    assert refused.value.code == code
    expected = "Enter an amount in dollars, such as 262.50." if code == "invalid" else "At most 2 digits"
    assert refused.value.messages[0].startswith(expected)


def test_a_dollars_field_stands_in_for_the_model_fields_form_fields():
    rate = Domain._meta.get_field("base_rate_cents").formfield(form_class=DollarsField)
    assert rate.clean("1,250.75") == 125075
    with pytest.raises(ValidationError):
        rate.clean("-1")  # the model's minimum, in cents
    price = ModelDeployment._meta.get_field("price_in_cents_per_1m").formfield(
        form_class=DollarsField, fraction_digits=4
    )
    assert price.clean("2.500001") == Decimal("250.0001")
    with pytest.raises(ValidationError):
        DollarsField(max_value=10000).clean("100.01")
