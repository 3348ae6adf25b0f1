"""The trace search: every stamped row of one trace, API and admin (docs/tracing.md)."""

import uuid

import pytest
from django.contrib.auth import get_user_model

from agency.models import ApiKey, IdempotencyRecord
from agency.services.api_keys import api_key_create
from tracing.context import trace_started

pytestmark = pytest.mark.django_db


def test_it_stamps_rows_with_the_trace_that_created_them():
    with trace_started("test") as span:
        api_key, _ = api_key_create(name="stamped", scope="read")
    assert api_key.trace_id == format(span.get_span_context().trace_id, "032x")


def test_it_leaves_rows_made_outside_any_trace_unstamped():
    api_key, _ = api_key_create(name="plain", scope="read")
    assert api_key.trace_id == ""


def test_it_lists_a_traces_records_in_time_order_across_models(operator_client):
    with trace_started("test") as span:
        first, _ = api_key_create(name="first", scope="read")
        IdempotencyRecord.objects.create(principal="key:1", key="k", fingerprint="f")
        api_key_create(name="third", scope="read")
    api_key_create(name="other trace", scope="read")
    trace_id = format(span.get_span_context().trace_id, "032x")

    body = operator_client.get(f"/api/v1/traces/{trace_id}").json()
    assert body["trace_id"] == trace_id
    assert body["count"] == 3
    assert [r["model"] for r in body["records"]] == ["agency.apikey", "agency.idempotencyrecord", "agency.apikey"]
    assert body["records"][0]["id"] == str(first.pk)
    assert body["records"][0]["admin_url"] == f"/admin/agency/apikey/{first.pk}/change/"
    assert "other trace" not in str(body)


def test_it_answers_an_unknown_trace_with_no_records(operator_client):
    body = operator_client.get(f"/api/v1/traces/{uuid.uuid4().hex}").json()
    assert body["count"] == 0 and body["records"] == []


def test_it_shows_the_timeline_in_the_admin(client):
    staff = get_user_model().objects.create_superuser("op", password="pw-for-tests")
    client.force_login(staff)
    with trace_started("test") as span:
        api_key_create(name="from the admin search", scope=ApiKey.Scope.READ)
    trace_id = format(span.get_span_context().trace_id, "032x")

    page = client.get("/admin/traces/", {"trace_id": trace_id.upper()})
    assert page.status_code == 200
    assert b"from the admin search" in page.content
    assert b"1 record in this trace" in page.content
    assert b"32 hexadecimal" in client.get("/admin/traces/", {"trace_id": "nope"}).content
    assert b"Trace search" in client.get("/admin/").content


def test_it_keeps_the_admin_trace_search_for_staff(client):
    assert client.get("/admin/traces/").status_code == 302  # to the login page


def test_it_keeps_the_api_trace_search_for_operators(read_client):
    assert read_client.get(f"/api/v1/traces/{uuid.uuid4().hex}").status_code == 403


def test_it_shows_staff_only_the_models_they_may_view(client):
    staff = get_user_model().objects.create_user("limited", password="pw-for-tests", is_staff=True)
    client.force_login(staff)
    with trace_started("test") as span:
        api_key_create(name="hidden from limited staff", scope=ApiKey.Scope.READ)
    trace_id = format(span.get_span_context().trace_id, "032x")
    page = client.get("/admin/traces/", {"trace_id": trace_id})
    assert page.status_code == 200
    assert b"hidden from limited staff" not in page.content
