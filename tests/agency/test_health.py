import time

import pytest

from agency.celery import app as celery_app
from tests.processes import broker_start, free_port, hung_port, stop, wait_for

pytestmark = pytest.mark.django_db


def test_it_reports_healthy_without_credentials(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"] == {**body["checks"]["broker"], "ok": True, "mode": "eager"}
    assert "model_gateway" in body["checks"]
    assert body["checks"]["cache"] == {**body["checks"]["cache"], "ok": True, "backend": "LocMemCache"}


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


def _healthz_with_broker(client, url: str):
    old = celery_app.conf.broker_url
    celery_app.conf.broker_url = url
    try:
        started = time.perf_counter()
        response = client.get("/healthz")
        return response, time.perf_counter() - started
    finally:
        celery_app.conf.broker_url = old


@pytest.fixture
def with_broker(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.HEALTH_BROKER_CACHE_SECONDS = 0


def test_it_answers_at_once_when_nothing_listens_on_the_brokers_port(client, with_broker):
    response, elapsed = _healthz_with_broker(client, f"redis://127.0.0.1:{free_port()}/0")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False
    assert elapsed < 0.5  # one attempt; kombu's retry used to sleep 2 s first


def test_it_gives_up_on_a_hung_broker_within_its_timeout(client, with_broker, settings):
    assert settings.HEALTH_CHECK_TIMEOUT_SECONDS == 1.0  # the default
    with hung_port() as port:
        response, elapsed = _healthz_with_broker(client, f"redis://127.0.0.1:{port}/0")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False
    assert 0.9 < elapsed < 2.0  # the 1 s timeout plus the other checks, on a busy machine; not a hang


def test_it_reuses_the_brokers_answer_for_a_few_seconds(client, with_broker, settings):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    broker = broker_start(port)
    try:
        up = wait_for(lambda: _healthz_with_broker(client, url)[0].status_code == 200, timeout=10, what="the broker")
    finally:
        stop(broker)
    assert up
    settings.HEALTH_BROKER_CACHE_SECONDS = 60
    cached, elapsed = _healthz_with_broker(client, url)
    assert cached.status_code == 200
    assert cached.json()["checks"]["broker"] == {**cached.json()["checks"]["broker"], "ok": True, "cached": True}
    assert elapsed < 0.1
    settings.HEALTH_BROKER_CACHE_SECONDS = 0
    fresh, _ = _healthz_with_broker(client, url)
    assert fresh.status_code == 503
    assert fresh.json()["checks"]["broker"]["ok"] is False and "cached" not in fresh.json()["checks"]["broker"]


def test_it_reports_an_unreachable_cache_with_503(client, cache_down):
    started = time.perf_counter()
    response = client.get("/healthz")
    elapsed = time.perf_counter() - started
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["cache"]["ok"] is False
    assert body["checks"]["cache"]["error"] == {"refused": "ConnectionError", "hung": "TimeoutError"}[cache_down]
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
    assert "redis://" not in response.content.decode() and "127.0.0.1" not in response.content.decode()
    assert elapsed < 1.5
