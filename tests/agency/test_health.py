import pytest

from agency.celery import app as celery_app

pytestmark = pytest.mark.django_db


def test_it_reports_healthy_without_credentials(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"] == {**body["checks"]["broker"], "ok": True, "mode": "eager"}
    assert "model_gateway" in body["checks"]


def test_it_reports_an_unreachable_broker_with_503(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    old = celery_app.conf.broker_url
    celery_app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        response = client.get("/healthz")
    finally:
        celery_app.conf.broker_url = old
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"]["ok"] is False
    assert "redis://" not in response.content.decode()  # no URLs, hosts or secrets


def test_it_refuses_other_methods(client):
    assert client.post("/healthz").status_code == 405
