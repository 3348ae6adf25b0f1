"""Stripe Checkout and the webhook (docs/tasks.md), against a local server speaking Stripe's format."""

import json
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_celery_results.models import TaskResult

from agency.cycle import housekeeping
from agency.models import ApiKey, IdempotencyRecord, StripeEvent, Task, TaskEvent
from agency.services.tasks import task_transition
from tests.agency.factories import TaskFactory, domain
from tests.agency.fake_stripe import FakeStripe, session_event, sign
from tests.concurrency import run_at_once
from tests.conftest import client_with_key

SECRET, OLD_SECRET = "whsec_current", "whsec_previous"
WEBHOOK = "/api/v1/webhooks/stripe"
ORDER = {"domain": "legal", "title": "NDA", "client_email": "payer@example.com", "payment": "stripe"}


@pytest.fixture
def fake_stripe(settings):
    server = FakeStripe()
    settings.STRIPE_SECRET_KEY = "sk_test_local"
    settings.STRIPE_API_BASE = server.url
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET, OLD_SECRET]
    yield server
    server.close()


@pytest.fixture
def writer(issue_key):
    return client_with_key(issue_key(ApiKey.Scope.WRITE))


def _post_event(client, event: dict, secret: str = SECRET, timestamp: int | None = None, header: str | None = None):
    payload = json.dumps(event).encode()
    signature = sign(payload, secret, timestamp) if header is None else header
    return client.post(WEBHOOK, payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)


def _work_enqueued(task) -> int:
    return TaskResult.objects.filter(task_name="agency.task_work", task_args__contains=str(task.pk)).count()


@pytest.mark.django_db
def test_it_opens_a_checkout_session_for_a_stripe_task(writer, fake_stripe):
    response = writer.post(
        ORDER and "/api/v1/tasks", ORDER, format="json", HTTP_TRACEPARENT=f"00-{'a1' * 16}-{'b2' * 8}-01"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    task = Task.objects.get(pk=body["id"])
    assert (task.status, task.payment) == ("pending", "stripe")
    assert body["checkout_url"].endswith(task.stripe_session_id)
    [call] = fake_stripe.requests
    assert call["path"] == "/v1/checkout/sessions"
    assert call["form"]["line_items[0][price_data][unit_amount]"] == "26250"
    assert call["form"]["line_items[0][price_data][currency]"] == "usd"
    assert call["form"]["metadata[task_id]"] == str(task.pk)
    assert call["headers"]["Idempotency-Key"] == f"agency-checkout-{task.checkout_key}"
    assert call["headers"]["traceparent"].startswith(f"00-{'a1' * 16}-")  # Stripe sees our trace
    assert "sk_test_local" in call["headers"]["Authorization"]


@pytest.mark.django_db
@pytest.mark.parametrize("outage", ["error", "unreachable"])
def test_it_answers_503_and_leaves_no_pending_task_when_stripe_is_down(writer, fake_stripe, settings, outage):
    if outage == "error":
        fake_stripe.fail_with = 500
    else:
        settings.STRIPE_API_BASE = "http://127.0.0.1:1"
    response = writer.post("/api/v1/tasks", ORDER, format="json")
    assert response.status_code == 503
    assert response.json()["code"] == "payment_provider_unavailable"
    [task] = Task.objects.all()
    assert (task.status, task.stripe_session_id) == ("cancelled", None)
    moves = list(TaskEvent.objects.filter(task=task).values_list("from_status", "to_status", "reason"))
    assert moves[-1] == ("pending", "cancelled", "the checkout could not be opened: Stripe is unavailable")


@pytest.mark.django_db
def test_a_retry_with_the_same_key_after_a_stripe_failure_creates_a_new_task(writer, fake_stripe):
    fake_stripe.fail_with = 500
    assert writer.post("/api/v1/tasks", ORDER, format="json", HTTP_IDEMPOTENCY_KEY="order-9").status_code == 503
    fake_stripe.fail_with = None
    retried = writer.post("/api/v1/tasks", ORDER, format="json", HTTP_IDEMPOTENCY_KEY="order-9")
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    assert sorted(Task.objects.values_list("status", flat=True)) == ["cancelled", "pending"]
    assert Task.objects.get(pk=retried.json()["id"]).stripe_session_id
    replayed = writer.post("/api/v1/tasks", ORDER, format="json", HTTP_IDEMPOTENCY_KEY="order-9")
    assert replayed.headers["Idempotent-Replayed"] == "true" and replayed.json() == retried.json()


@pytest.mark.django_db(transaction=True)
def test_stripe_is_asked_only_after_the_task_is_committed_and_no_writer_waits_for_it(issue_key, fake_stripe):
    """While Stripe is being asked, another connection already sees the pending task and can write."""
    seen = []

    def look(form):  # runs in the fake server's thread, on a connection of its own
        try:
            task = Task.objects.filter(pk=int(form["metadata[task_id]"])).first()
            ApiKey.objects.filter(name="bystander").update(name="bystander")  # a write meanwhile
            seen.append(task.status if task else "not visible")
        except Exception as exc:  # a lock held by the request would show here
            seen.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    fake_stripe.on_request = look
    domain("legal")  # seeded by a migration, flushed by an earlier transactional test
    writer = client_with_key(issue_key(ApiKey.Scope.WRITE))
    response = writer.post("/api/v1/tasks", ORDER, format="json", HTTP_IDEMPOTENCY_KEY="seen-1")
    assert response.status_code == 201, response.json()
    assert seen == ["pending"]


@pytest.mark.django_db
def test_a_creation_interrupted_before_stripe_answered_is_resumed_not_repeated(writer, fake_stripe, settings):
    """A process died after committing the task: the retry, after the claim timeout, finishes that task."""
    first = writer.post("/api/v1/tasks", ORDER, format="json", HTTP_IDEMPOTENCY_KEY="crash-1")
    task = Task.objects.get(pk=first.json()["id"])
    # The state that death leaves: the claim unanswered (and stale), the task without its session.
    record = IdempotencyRecord.objects.get(key="crash-1")
    stale = record.created_at - timedelta(seconds=settings.IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS + 1)
    IdempotencyRecord.objects.filter(pk=record.pk).update(status_code=None, response_body=None, created_at=stale)
    Task.objects.filter(pk=task.pk).update(stripe_session_id=None)

    resumed = writer.post("/api/v1/tasks", ORDER, format="json", HTTP_IDEMPOTENCY_KEY="crash-1")

    assert resumed.status_code == 201 and resumed.json()["id"] == task.pk
    assert Task.objects.count() == 1
    assert resumed.json()["checkout_url"] == first.json()["checkout_url"]  # Stripe's idempotency: same session
    keys = {call["headers"]["Idempotency-Key"] for call in fake_stripe.requests}
    assert keys == {f"agency-checkout-{task.checkout_key}"}
    assert Task.objects.get(pk=task.pk).stripe_session_id


@pytest.mark.django_db
def test_housekeeping_cancels_only_checkouts_that_were_never_opened_in_time(settings):
    settings.CHECKOUT_OPEN_TIMEOUT_SECONDS = 900
    abandoned = TaskFactory(status="pending", payment="stripe")
    recent = TaskFactory(status="pending", payment="stripe")
    opened = TaskFactory(status="pending", payment="stripe", stripe_session_id="cs_test_open")
    prepaid = TaskFactory(status="pending", payment="prepaid")
    old = timezone.now() - timedelta(seconds=901)
    Task.objects.filter(pk__in=[abandoned.pk, opened.pk, prepaid.pk]).update(created_at=old)
    Task.objects.filter(pk=recent.pk).update(created_at=timezone.now() - timedelta(seconds=899))

    assert housekeeping()["abandoned_checkouts_cancelled"] == 1
    statuses = dict(Task.objects.values_list("pk", "status"))
    assert statuses == {abandoned.pk: "cancelled", recent.pk: "pending", opened.pk: "pending", prepaid.pk: "pending"}
    assert housekeeping()["abandoned_checkouts_cancelled"] == 0


@pytest.mark.django_db
def test_it_answers_503_when_stripe_is_not_configured(writer, settings):
    settings.STRIPE_SECRET_KEY = ""
    assert writer.post("/api/v1/tasks", ORDER, format="json").status_code == 503
    assert not Task.objects.exists()


@pytest.fixture
def pending(db):
    return TaskFactory(status="pending", payment="stripe", stripe_session_id="cs_test_abc", price_cents=26250)


@pytest.mark.django_db
def test_it_marks_a_task_paid_once_and_hands_it_to_the_pipeline(
    client, fake_stripe, pending, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _post_event(client, session_event("checkout.session.completed", task=pending))
    assert response.status_code == 200
    assert response.json()["outcome"] == "processed"
    pending.refresh_from_db()
    assert pending.paid_at is not None
    assert _work_enqueued(pending) == 1
    assert TaskEvent.objects.get(task=pending, to_status="paid").actor == "stripe"
    # The pipeline had it once the payment committed: no input table, so the baseline declined it.
    assert pending.status == "escalated" and pending.work_attempts.get().outcome == "declined"


@pytest.mark.django_db
def test_it_accepts_the_previous_secret_while_rotating(client, fake_stripe, pending):
    response = _post_event(client, session_event("checkout.session.async_payment_succeeded", task=pending), OLD_SECRET)
    assert response.status_code == 200
    pending.refresh_from_db()
    assert pending.status == "paid"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    ["", "t=1,v1=deadbeef", "garbage", f"t={int(time.time())},v1=" + "0" * 64, "v1=abc"],
    ids=["missing", "wrong", "malformed", "zeros", "no-timestamp"],
)
def test_it_refuses_a_bad_signature_with_400(client, fake_stripe, pending, header):
    response = _post_event(client, session_event("checkout.session.completed", task=pending), header=header)
    assert response.status_code == 400
    pending.refresh_from_db()
    assert pending.status == "pending"
    assert not StripeEvent.objects.exists()


@pytest.mark.django_db
def test_it_refuses_a_signature_signed_with_an_unknown_secret(client, fake_stripe, pending):
    assert (
        _post_event(client, session_event("checkout.session.completed", task=pending), "whsec_other").status_code == 400
    )


@pytest.mark.django_db
@pytest.mark.parametrize("age", [301, -301])
def test_it_refuses_a_timestamp_outside_300_seconds(client, fake_stripe, pending, age):
    event = session_event("checkout.session.completed", task=pending)
    assert _post_event(client, event, timestamp=int(time.time()) - age).status_code == 400
    assert _post_event(client, event, timestamp=int(time.time()) - 290).status_code == 200


@pytest.mark.django_db
def test_it_answers_a_replay_with_200_and_changes_nothing(client, fake_stripe, pending):
    event = session_event("checkout.session.completed", task=pending)
    assert _post_event(client, event).status_code == 200
    assert _post_event(client, event).status_code == 200
    assert StripeEvent.objects.count() == 1
    assert TaskEvent.objects.filter(task=pending).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"amount": 100}, "paid 100 USD"),
        ({"currency": "eur"}, "EUR"),
    ],
)
def test_it_flags_an_unpaid_or_mismatched_payment_for_an_operator(client, fake_stripe, pending, changes, problem):
    response = _post_event(client, session_event("checkout.session.completed", task=pending, **changes))
    assert response.json()["outcome"] == "flagged"
    pending.refresh_from_db()
    assert pending.status == "pending"
    assert pending.needs_operator
    assert problem in pending.operator_note


@pytest.mark.django_db
def test_a_delayed_payment_waits_for_its_outcome_without_flagging_then_pays(client, fake_stripe, pending):
    other = TaskFactory(status="pending", payment="stripe", stripe_session_id="cs_test_other", price_cents=26250)
    completed = _post_event(client, session_event("checkout.session.completed", task=pending, payment_status="unpaid"))
    assert completed.json()["outcome"] == "ignored"
    pending.refresh_from_db()
    assert (pending.status, pending.needs_operator) == ("pending", False)
    succeeded = _post_event(client, session_event("checkout.session.async_payment_succeeded", task=pending))
    assert succeeded.json()["outcome"] == "processed"
    pending.refresh_from_db()
    assert (pending.status, pending.needs_operator) == ("paid", False)
    # An async success that is not paid after all is still a problem for a person.
    odd = _post_event(
        client, session_event("checkout.session.async_payment_succeeded", task=other, payment_status="unpaid")
    )
    assert odd.json()["outcome"] == "flagged"
    other.refresh_from_db()
    assert other.status == "pending" and "payment_status" in other.operator_note


@pytest.mark.django_db
def test_it_cancels_an_expired_checkout_only_from_pending(client, fake_stripe, pending):
    paid = TaskFactory(status="paid", payment="stripe", stripe_session_id="cs_test_paid")
    assert _post_event(client, session_event("checkout.session.expired", task=pending)).json()["outcome"] == "processed"
    assert _post_event(client, session_event("checkout.session.expired", task=paid)).json()["outcome"] == "ignored"
    pending.refresh_from_db()
    paid.refresh_from_db()
    assert (pending.status, paid.status) == ("cancelled", "paid")


@pytest.mark.django_db
def test_it_ignores_a_late_completed_event_for_a_completed_task(client, fake_stripe, pending):
    _post_event(client, session_event("checkout.session.async_payment_succeeded", task=pending))
    pending.refresh_from_db()
    for step in ["planning", "processing", "reviewing", "completed"]:
        task_transition(task=pending, to=step, actor="pipeline")
    events_before = TaskEvent.objects.filter(task=pending).count()
    response = _post_event(client, session_event("checkout.session.completed", task=pending))
    assert response.json()["outcome"] == "ignored"
    pending.refresh_from_db()
    assert pending.status == "completed" and not pending.needs_operator
    assert TaskEvent.objects.filter(task=pending).count() == events_before


@pytest.mark.django_db
@pytest.mark.parametrize("before", ["cancelled", "paid by an operator"])
def test_it_flags_a_payment_for_a_task_that_no_longer_waits_for_one(client, fake_stripe, pending, before):
    if before == "cancelled":
        task_transition(task=pending, to="cancelled", actor="api:key:1")
    else:
        task_transition(task=pending, to="paid", actor="admin:user:1")
    response = _post_event(client, session_event("checkout.session.completed", task=pending))
    assert response.json()["outcome"] == "flagged"
    pending.refresh_from_db()
    assert pending.needs_operator and "refund" in pending.operator_note


@pytest.mark.django_db
def test_it_stores_events_whose_numbers_the_stripe_library_reads_as_decimals(client, fake_stripe, pending):
    event = session_event("checkout.session.completed", task=pending)
    event["data"]["object"]["currency_conversion"] = {"fx_rate": "1.0835", "source_currency": "eur"}
    assert _post_event(client, event).status_code == 200
    assert StripeEvent.objects.get().payload["data"]["object"]["currency_conversion"]["fx_rate"] == "1.0835"


@pytest.mark.django_db
def test_it_removes_the_stored_input_when_stripe_fails(writer, fake_stripe, media_root):
    fake_stripe.fail_with = 500
    response = writer.post("/api/v1/tasks", {**ORDER, "input_csv": "a,b\n1,2\n"}, format="json")
    assert response.status_code == 503
    [task] = Task.objects.all()
    assert task.status == "cancelled" and not task.input_file
    assert not [p for p in media_root.rglob("*") if p.is_file()]


@pytest.mark.django_db
def test_it_flags_an_event_for_another_session(client, fake_stripe, pending):
    response = _post_event(
        client, session_event("checkout.session.completed", task=pending, session_id="cs_test_other")
    )
    assert response.json()["outcome"] == "flagged"
    pending.refresh_from_db()
    assert pending.status == "pending"


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_it_processes_ten_parallel_copies_of_one_event_once(fake_stripe):
    from django.test import Client

    task = TaskFactory(status="pending", payment="stripe", stripe_session_id="cs_test_race", price_cents=26250)
    payload = json.dumps(session_event("checkout.session.completed", task=task)).encode()

    def deliver(_):
        signature = sign(payload, SECRET)
        return Client().post(WEBHOOK, payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)

    statuses = [response.status_code for response in run_at_once(10, deliver)]
    assert statuses == [200] * 10
    assert StripeEvent.objects.count() == 1
    assert list(TaskEvent.objects.filter(task=task, from_status="pending").values_list("to_status", flat=True)) == [
        "paid"]  # fmt: skip
    assert _work_enqueued(task) == 1
    assert TaskEvent.objects.filter(task=task, from_status="paid").count() == 1  # the pipeline claimed it once


def _failed(task) -> dict:
    return session_event("checkout.session.async_payment_failed", task=task, payment_status="unpaid")


@pytest.mark.django_db
def test_it_flags_a_failed_delayed_payment_and_leaves_the_task_pending(client, fake_stripe, pending):
    other = TaskFactory(status="pending", payment="stripe", stripe_session_id="cs_test_other", price_cents=26250)
    response = _post_event(client, _failed(pending))
    assert response.status_code == 200
    assert response.json()["outcome"] == "flagged"
    pending.refresh_from_db()
    other.refresh_from_db()
    assert (pending.status, pending.needs_operator) == ("pending", True)
    assert pending.operator_note == (
        "Stripe: the delayed payment of session cs_test_abc failed: ask the client to pay another way, "
        "then mark the task paid or cancel it"
    )
    assert (other.status, other.needs_operator, other.operator_note) == ("pending", False, "")
    assert not TaskEvent.objects.filter(task=pending).exists()  # no move, no audit event


@pytest.mark.django_db
def test_a_later_success_pays_the_task_and_withdraws_only_that_failures_note(client, fake_stripe, pending):
    from agency.services.tasks import task_flag

    task_flag(task=pending, note="Client asked for an invoice.", actor="admin:user:1")
    alone = TaskFactory(status="pending", payment="stripe", stripe_session_id="cs_test_alone", price_cents=26250)
    for task in (pending, alone):
        assert _post_event(client, _failed(task)).json()["outcome"] == "flagged"
    succeeded = _post_event(client, session_event("checkout.session.async_payment_succeeded", task=pending))
    assert succeeded.json()["outcome"] == "processed"
    pending.refresh_from_db()
    alone.refresh_from_db()
    assert pending.status == "paid"
    assert (pending.needs_operator, pending.operator_note) == (True, "Client asked for an invoice.")
    # The other session's failure still stands until its own payment arrives.
    assert alone.status == "pending" and alone.needs_operator and "cs_test_alone" in alone.operator_note
    _post_event(client, session_event("checkout.session.async_payment_succeeded", task=alone))
    alone.refresh_from_db()
    assert (alone.status, alone.needs_operator, alone.operator_note) == ("paid", False, "")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("before", "outcome", "flagged"),
    [
        ("paid through Stripe", "flagged", True),
        ("paid by an operator", "ignored", False),
        ("cancelled", "ignored", False),
    ],
)
def test_it_judges_a_failed_delayed_payment_by_how_the_task_moved_on(
    client, fake_stripe, pending, before, outcome, flagged
):
    if before == "paid through Stripe":
        _post_event(client, session_event("checkout.session.completed", task=pending))
    else:
        task_transition(task=pending, to=before.split()[0], actor="admin:user:1")
    pending.refresh_from_db()
    response = _post_event(client, _failed(pending))
    assert response.json()["outcome"] == outcome
    pending.refresh_from_db()
    assert pending.status == before.split()[0]
    assert pending.needs_operator is flagged
    assert ("check it in Stripe" in pending.operator_note) is flagged
