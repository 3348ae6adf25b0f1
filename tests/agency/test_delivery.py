"""Deliverables and the client's delivery link (docs/tasks.md)."""

import time
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from agency.errors import DomainError
from agency.models import DeliveryLink
from agency.services.delivery import (
    DeliveryRefused,
    deliverable_add,
    delivery_download_count,
    delivery_email_enqueue,
    delivery_link_issue,
    delivery_link_revoke,
)
from agency.services.tasks import task_transition
from tests.agency.factories import TaskFactory
from tests.concurrency import run_at_once

pytestmark = pytest.mark.django_db


def _completed_with_file(**task_fields):
    task = TaskFactory(status="reviewing", **task_fields)
    deliverable_add(task=task, name="report.csv", content=b"month,total\njan,10\n", content_type="text/csv")
    task_transition(task=task, to="completed", actor="test")
    return task


def _link(task):
    return delivery_link_issue(task=task)


def test_it_emails_the_client_a_working_link_when_the_task_completes(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        task = _completed_with_file()
    [message] = mail.outbox
    assert message.to == [task.client.email]
    url = next(word for word in message.body.split() if "/deliver/" in word)
    path = url.split("8000", 1)[1]
    page = Client().get(path)
    assert page.status_code == 200
    assert b"report.csv" in page.content
    assert DeliveryLink.objects.get(task=task).token_hash not in message.body


def test_it_serves_downloads_up_to_the_limit_then_refuses(settings):
    settings.DELIVERY_MAX_DOWNLOADS = 3
    task = _completed_with_file()
    issued = _link(task)
    file_id = task.deliverables.get().pk
    url = f"{issued.path}{file_id}"
    answers = [Client().get(url) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 404]
    assert b"".join(answers[0].streaming_content) == b"month,total\njan,10\n"
    assert DeliveryLink.objects.get(pk=issued.link.pk).downloads == 3
    assert Client().get(issued.path).status_code == 404  # the page says the link is used up too


def test_it_sends_files_with_protective_headers():
    task = _completed_with_file()
    issued = _link(task)
    response = Client().get(f"{issued.path}{task.deliverables.get().pk}")
    assert response.headers["Content-Disposition"] == 'attachment; filename="report.csv"'
    assert response.headers["Cache-Control"] == "no-store, private"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]
    page = Client().get(issued.path)
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]


def test_it_refuses_an_expired_link():
    task = _completed_with_file()
    issued = _link(task)
    DeliveryLink.objects.filter(pk=issued.link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert Client().get(issued.path).status_code == 404
    assert Client().get(f"{issued.path}{task.deliverables.get().pk}").status_code == 404


def test_it_makes_the_link_valid_seven_days_from_completion(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # the e-mail issues the link when it is sent
        task = _completed_with_file()
    link = DeliveryLink.objects.get(task=task)
    assert link.expires_at == task.completed_at + timedelta(days=7)


def test_it_refuses_a_link_for_a_task_that_is_not_completed():
    with pytest.raises(Exception, match="not completed"):
        delivery_link_issue(task=TaskFactory(status="paid"))


def test_it_throttles_failed_attempts_per_address(settings):
    settings.DELIVERY_MAX_FAILURES_PER_IP = 3
    task = _completed_with_file()
    issued = _link(task)
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    codes = [attacker.get(f"/deliver/{task.pk}/wrong-{i}/").status_code for i in range(4)]
    assert codes == [404, 404, 404, 429]
    throttled = attacker.get(issued.path)  # even the right token, from that address, waits
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == str(settings.DELIVERY_FAILURE_WINDOW_SECONDS)
    assert Client(REMOTE_ADDR="198.51.100.1").get(issued.path).status_code == 200


def test_it_throttles_failed_attempts_per_task_across_addresses(settings):
    settings.DELIVERY_MAX_FAILURES_PER_TASK = 3
    settings.DELIVERY_MAX_FAILURES_PER_IP = 100
    task = _completed_with_file()
    codes = [Client(REMOTE_ADDR=f"203.0.113.{i}").get(f"/deliver/{task.pk}/guess-{i}/").status_code for i in range(5)]
    assert codes == [404, 404, 404, 429, 429]  # past the limit, guesses learn nothing
    # The client's real link still works: a 256-bit token cannot be guessed, so it is not locked out.
    assert Client(REMOTE_ADDR="198.51.100.7").get(_link(task).path).status_code == 200


def test_it_counts_an_ipv6_client_by_its_64_prefix(settings):
    settings.DELIVERY_MAX_FAILURES_PER_IP = 2
    task = _completed_with_file()
    for host in ("1", "2"):
        Client(REMOTE_ADDR=f"2001:db8:0:1::{host}").get(f"/deliver/{task.pk}/wrong/")
    assert Client(REMOTE_ADDR="2001:db8:0:1::99").get(_link(task).path).status_code == 429
    assert Client(REMOTE_ADDR="2001:db8:0:2::1").get(_link(task).path).status_code == 200


def test_it_never_shows_the_token_in_the_api_or_admin(operator_client, admin_client):
    task = _completed_with_file()
    issued = _link(task)
    assert issued.token not in operator_client.get(f"/api/v1/tasks/{task.pk}").content.decode()
    assert issued.token not in operator_client.get("/api/v1/tasks").content.decode()
    page = admin_client.get(f"/admin/agency/deliverylink/{issued.link.pk}/change/").content.decode()
    assert issued.token not in page and issued.link.token_hash not in page


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_it_respects_the_download_limit_exactly_under_concurrency(settings):
    settings.DELIVERY_MAX_DOWNLOADS = 5
    task = _completed_with_file()
    issued = _link(task)
    url = f"{issued.path}{task.deliverables.get().pk}"
    codes = run_at_once(12, lambda n: Client(REMOTE_ADDR=f"198.51.100.{n}").get(url).status_code)
    assert sorted(codes) == [200] * 5 + [404] * 7
    assert DeliveryLink.objects.get(pk=issued.link.pk).downloads == 5


def test_it_counts_failures_against_the_address_our_proxy_saw(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    settings.DELIVERY_MAX_FAILURES_PER_IP = 2
    task = _completed_with_file()
    proxy = "10.0.0.5"
    for spoofed in ("1.1.1.1", "2.2.2.2"):  # the client writes what it likes in front; the proxy appends the truth
        Client(REMOTE_ADDR=proxy).get(f"/deliver/{task.pk}/wrong/", HTTP_X_FORWARDED_FOR=f"{spoofed}, 203.0.113.50")
    blocked = Client(REMOTE_ADDR=proxy).get(_link(task).path, HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.50")
    assert blocked.status_code == 429
    other = Client(REMOTE_ADDR=proxy).get(_link(task).path, HTTP_X_FORWARDED_FOR="203.0.113.51")
    assert other.status_code == 200


def test_it_refuses_a_revoked_link_like_an_unknown_one_and_leaves_other_links_working():
    task, other = _completed_with_file(), _completed_with_file()
    revoked, kept, others = _link(task), _link(task), _link(other)
    delivery_link_revoke(link=revoked.link, actor="admin:user:1")
    file_url = f"{revoked.path}{task.deliverables.get().pk}"
    page, download = Client().get(revoked.path), Client().get(file_url)
    unknown = Client().get(f"/deliver/{task.pk}/never-issued/")
    assert (page.status_code, download.status_code) == (404, 404)
    assert page.content == unknown.content  # nothing tells a revoked link from one never issued
    assert DeliveryLink.objects.get(pk=revoked.link.pk).downloads == 0
    assert Client().get(kept.path).status_code == 200  # the same task's other link
    assert Client().get(f"{kept.path}{task.deliverables.get().pk}").status_code == 200
    assert Client().get(others.path).status_code == 200


def test_it_revokes_a_link_once():
    issued = _link(_completed_with_file())
    link = delivery_link_revoke(link=issued.link, actor="admin:user:1")
    assert link.revoked_at is not None
    with pytest.raises(DomainError) as refused:
        delivery_link_revoke(link=issued.link, actor="admin:user:1")
    assert (str(refused.value), refused.value.existing_id) == ("This delivery link is already revoked.", link.pk)
    assert DeliveryLink.objects.get(pk=issued.link.pk).revoked_at == link.revoked_at


def test_a_download_counts_against_its_own_link_only():
    task = _completed_with_file()
    first, second = _link(task), _link(task)
    assert Client().get(f"{first.path}{task.deliverables.get().pk}").status_code == 200
    counts = dict(DeliveryLink.objects.values_list("pk", "downloads"))
    assert (counts[first.link.pk], counts[second.link.pk]) == (1, 0)


@pytest.mark.parametrize(
    "ended",
    [
        {"downloads": 3, "max_downloads": 3},
        {"expires_at": timezone.now() - timedelta(seconds=1)},
        {"revoked_at": timezone.now()},
    ],
    ids=["used-up", "expired", "revoked"],
)
def test_a_link_that_ended_after_it_was_opened_counts_no_download(ended):
    link = _link(_completed_with_file()).link  # opened: the page is showing
    DeliveryLink.objects.filter(pk=link.pk).update(**ended)  # then the last download, the expiry, a revoke
    with pytest.raises(DeliveryRefused):
        delivery_download_count(link=link)
    assert DeliveryLink.objects.get(pk=link.pk).downloads == ended.get("downloads", 0)


def test_a_token_is_256_random_bits_and_works_only_under_its_own_task():
    task, other = _completed_with_file(), _completed_with_file()
    issued = _link(task)
    assert len(issued.token) == 43  # 32 bytes, URL-safe base64
    assert Client().get(issued.path).status_code == 200
    assert Client().get(issued.path.replace(f"/deliver/{task.pk}/", f"/deliver/{other.pk}/")).status_code == 404


def test_it_refuses_a_link_for_a_task_that_is_not_completed_and_says_why():
    task = TaskFactory(status="processing")
    for refuse in (delivery_link_issue, delivery_email_enqueue):
        with pytest.raises(DeliveryRefused) as refused:
            refuse(task=task)
        assert str(refused.value) == f"Task #{task.pk} is processing, not completed."  # the admin shows it


def test_the_failure_throttle_forgets_failures_after_its_window(settings):
    settings.DELIVERY_MAX_FAILURES_PER_IP, settings.DELIVERY_FAILURE_WINDOW_SECONDS = 1, 1
    task = _completed_with_file()
    issued = _link(task)
    guesser = Client(REMOTE_ADDR="203.0.113.77")
    assert [guesser.get(f"/deliver/{task.pk}/wrong-{i}/").status_code for i in range(2)] == [404, 429]
    time.sleep(1.2)
    assert guesser.get(issued.path).status_code == 200
