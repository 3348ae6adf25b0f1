"""A broker outage loses no notification (docs/escalations.md).

The production shape: a gunicorn web process whose broker is down, then the
broker coming back with a Celery worker running beat. Runs on the PostgreSQL
pass: the other processes must share the test database.
"""

import json
import subprocess
import time

import httpx
import pytest

from agency.models import ApiKey
from escalations.models import Escalation, Notification
from tests.agency.factories import TaskFactory
from tests.escalations import fakes
from tests.escalations.factories import ChannelFactory
from tests.processes import (
    broker_down_env,
    broker_start,
    json_lines,
    stop,
    wait_for,
    web_answers,
    web_start,
    worker_start,
)

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


def test_notifications_wait_out_a_broker_outage_and_go_out_once_it_is_back(issue_key):
    env, broker_port = broker_down_env(
        NOTIFY_RELAY_INTERVAL_SECONDS="1",
        NOTIFY_SECRET_TEST_WEBHOOK=fakes.WEBHOOK_SECRET,
        NOTIFY_ALLOW_PRIVATE_TARGETS="true",  # the receiver is on loopback
        LOG_LEVEL="INFO",
    )
    key = issue_key(ApiKey.Scope.WRITE)
    processes = []
    web_lines: list[dict] = []
    with fakes.webhook() as receiver:
        ChannelFactory(kind="webhook", target=receiver.url, slug="test_webhook")
        task = TaskFactory(status="processing")
        try:
            web, url = web_start(env, stderr=subprocess.PIPE)
            processes.append(web)
            json_lines(web.stderr, web_lines)
            wait_for(lambda: web_answers(url), timeout=30, what="the web process")

            response = httpx.post(
                f"{url}/api/v1/escalations",
                json={"task": task.pk, "reason": "integration", "detail": "raised during a broker outage"},
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            assert response.status_code == 201, response.text  # the escalation does not depend on the broker
            escalation = Escalation.objects.get(pk=response.json()["id"])
            wait_for(
                lambda: any(line.get("event") == "notifications_relay_kick_failed" for line in web_lines), timeout=10
            )
            time.sleep(1)
            row = Notification.objects.get(escalation=escalation)
            assert (row.status, row.attempts, receiver.requests) == ("pending", 0, [])

            # The broker comes back, with a worker running beat: the waiting row goes out, once.
            processes.append(broker_start(broker_port))
            processes.append(worker_start(env, "-B", "-l", "WARNING"))
            wait_for(
                lambda: Notification.objects.filter(pk=row.pk, status="sent").exists(),
                timeout=60,
                what="the relay after the broker came back",
            )
            time.sleep(2)  # further beat runs find nothing due
        finally:
            stop(*reversed(processes))
    assert len(receiver.requests) == 1
    assert json.loads(receiver.requests[0]["body"])["data"]["escalation_id"] == escalation.pk
    assert fakes.webhook_signature_valid(receiver.requests[0])
