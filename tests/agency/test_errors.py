"""The API's JSON error shape (docs/api.md)."""

import pytest

pytestmark = pytest.mark.django_db


def test_it_answers_unknown_api_urls_with_json_404(operator_client):
    response = operator_client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_found"
    assert len(body["trace_id"]) == 32


def test_it_answers_bad_input_with_field_errors(operator_client):
    response = operator_client.get("/api/v1/traces/not-a-trace-id")
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "Invalid input."
    assert body["code"] == "invalid"
    assert "trace_id" in body["errors"]


def test_it_answers_a_wrong_method_with_405(operator_client):
    response = operator_client.delete("/api/v1/traces/" + "c" * 32)
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_it_throttles_with_429_and_retry_after(operator_client):
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    old = SimpleRateThrottle.THROTTLE_RATES
    SimpleRateThrottle.THROTTLE_RATES = {**api_settings.DEFAULT_THROTTLE_RATES, "principal": "3/min"}
    try:
        responses = [operator_client.get("/api/v1/traces/" + "d" * 32) for _ in range(4)]
    finally:
        SimpleRateThrottle.THROTTLE_RATES = old
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert 0 < int(responses[-1].headers["Retry-After"]) <= 60
    assert responses[-1].json()["code"] == "throttled"
    response = operator_client.get("/api/v1/traces/" + "d" * 32)
    assert response.status_code == 200  # the normal budget applies again


def test_it_serves_the_openapi_schema_and_docs(client):
    schema = client.get("/api/v1/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/traces/{trace_id}" in schema.content
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    assert b"cdn.jsdelivr" not in docs.content  # served from our static files, works offline
