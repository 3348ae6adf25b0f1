"""Stripe: Checkout Sessions for new tasks, and the webhook events that pay or expire them.

Every event id is stored once (a unique constraint), in the same transaction
as the change it causes, so replays and parallel copies of one event change
a task at most once. A task only moves forward: an event that arrives after
the task has moved on is recorded and ignored.

A delayed payment method (a bank debit) that fails sends
`checkout.session.async_payment_failed`: the session is complete, so it will
neither be paid nor expire. The task stays `pending` and is flagged: an
operator asks the client to pay another way, then marks it paid or cancels it.
Cancelling at once would lose the order, and Stripe does not promise to deliver
events in order, so a success for the same session may still arrive; it pays
the task and withdraws that failure's note (`task_unflag`), and no other.
"""

import json
import time
from datetime import timedelta

import stripe
import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from agency.models import StripeEvent, Task, TaskEvent
from agency.models.tasks import private_storage
from agency.services.tasks import InvalidTransition, task_flag, task_transition, task_unflag

logger = structlog.get_logger(__name__)

Outcome = StripeEvent.Outcome
COMPLETED_EVENT = "checkout.session.completed"
PAID_EVENTS = {COMPLETED_EVENT, "checkout.session.async_payment_succeeded"}
EXPIRED_EVENT = "checkout.session.expired"
ASYNC_FAILED_EVENT = "checkout.session.async_payment_failed"
HANDLED_EVENTS = {*PAID_EVENTS, EXPIRED_EVENT, ASYNC_FAILED_EVENT}


class PaymentsNotConfigured(Exception):
    """No Stripe key is set."""


class PaymentProviderUnavailable(Exception):
    """Stripe could not be reached or refused the request."""


class InvalidSignature(Exception):
    """The webhook body is not signed by any of our secrets (or too old)."""


_clients: dict[tuple, stripe.StripeClient] = {}


def stripe_client() -> stripe.StripeClient:
    """One client (and connection pool) per configuration, reused by every call in this process."""
    if not settings.STRIPE_SECRET_KEY:
        raise PaymentsNotConfigured("STRIPE_SECRET_KEY is not set")
    config = (settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_TIMEOUT_SECONDS)
    if config not in _clients:
        _clients[config] = stripe.StripeClient(
            settings.STRIPE_SECRET_KEY,
            base_addresses={"api": settings.STRIPE_API_BASE},
            # httpx, so the call carries the trace (traceparent) like every other outbound call.
            http_client=stripe.HTTPXClient(timeout=settings.STRIPE_TIMEOUT_SECONDS, allow_sync_methods=True),
            max_network_retries=1,
        )
    return _clients[config]


def checkout_open(*, task: Task, actor: str) -> str | None:
    """The URL to pay a committed `stripe` task at, asked of Stripe outside any transaction.

    A resumed task (the same creation retried) gets the same session back: the
    request carries the task's idempotency key. When Stripe fails, the task is
    cancelled by compare-and-set and its input removed, then the error is
    raised. A task no longer pending has nothing to pay (None).
    """
    if task.status != Task.Status.PENDING:
        return None
    try:
        return checkout_start(task=task)
    except PaymentProviderUnavailable:
        _checkout_abandon(task=task, actor=actor, reason="the checkout could not be opened: Stripe is unavailable")
        raise


def _checkout_abandon(*, task: Task, actor: str, reason: str) -> None:
    try:
        task_transition(task=task, to=Task.Status.CANCELLED, actor=actor, reason=reason)
    except InvalidTransition:
        return  # paid or cancelled meanwhile: nothing to undo
    if task.input_file:
        name = task.input_file.name
        Task.objects.filter(pk=task.pk).update(input_file="")
        private_storage().delete(name)


def checkout_abandoned_cancel(*, now=None) -> int:
    """Cancel `stripe` tasks left pending without a session (a process died between committing the task
    and hearing back from Stripe), once `CHECKOUT_OPEN_TIMEOUT_SECONDS` have passed. Returns how many."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.CHECKOUT_OPEN_TIMEOUT_SECONDS)
    stale = Task.objects.filter(
        status=Task.Status.PENDING, payment=Task.Payment.STRIPE, stripe_session_id__isnull=True, created_at__lt=cutoff
    )
    cancelled = 0
    for task in stale[:500]:
        before = task.status
        _checkout_abandon(task=task, actor="housekeeping", reason="no checkout was opened for it")
        cancelled += before != task.status
    return cancelled


def checkout_start(*, task: Task) -> str | None:
    """Open a Checkout Session for a pending task and remember its id; returns the URL to pay at
    (None when the task stopped waiting for a payment while Stripe answered)."""
    client = stripe_client()
    params = {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": task.currency.lower(),
                    "unit_amount": task.price_cents,
                    "product_data": {"name": task.title[:250]},
                },
            }
        ],
        "client_reference_id": str(task.pk),
        "metadata": {"task_id": str(task.pk)},
        "customer_email": task.client.email if task.client_id else None,
        "success_url": settings.STRIPE_SUCCESS_URL,
        "cancel_url": settings.STRIPE_CANCEL_URL,
    }
    try:
        session = client.v1.checkout.sessions.create(
            params={k: v for k, v in params.items() if v is not None},
            options={"idempotency_key": f"agency-checkout-{task.checkout_key}"},
        )
    except stripe.StripeError as exc:
        logger.error("stripe_checkout_failed", task_id=task.pk, error=f"{type(exc).__name__}: {exc}")
        raise PaymentProviderUnavailable(str(exc)) from exc
    # Compare-and-set: only a task still waiting for its payment takes the session.
    if not Task.objects.filter(pk=task.pk, status=Task.Status.PENDING).update(stripe_session_id=session.id):
        # Cancelled while Stripe answered (an operator, housekeeping): nobody may pay for it now.
        logger.warning("stripe_session_for_a_task_no_longer_pending", task_id=task.pk, session_id=session.id)
        task.refresh_from_db(fields=["status"])
        return None
    task.stripe_session_id = session.id
    return session.url


def webhook_verify(*, payload: bytes, signature: str) -> dict:
    """The event, if `signature` is valid for `payload` under any configured secret."""
    for secret in settings.STRIPE_WEBHOOK_SECRETS:
        try:
            stripe.Webhook.construct_event(
                payload, signature, secret, tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError:
            continue
        except ValueError as exc:  # not JSON
            raise InvalidSignature(f"Malformed payload: {exc}") from None
        _refuse_future_timestamp(signature)
        # The verified body itself, as plain JSON: the library's objects turn some fields into
        # Decimal, which a JSON column cannot store.
        return json.loads(payload)
    raise InvalidSignature("No valid signature for this payload.")


def _refuse_future_timestamp(signature: str) -> None:
    """Stripe's check only refuses old signatures; one dated beyond the tolerance ahead is as suspect."""
    stamps = [part[2:] for part in signature.split(",") if part.startswith("t=")]
    if not stamps or not stamps[0].isdigit():
        raise InvalidSignature("The signature has no timestamp.")
    if int(stamps[0]) > time.time() + settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS:
        raise InvalidSignature("The signature's timestamp is in the future.")


def stripe_event_process(*, event: dict) -> StripeEvent:
    """Record `event` once and apply it; a replay returns the stored record and changes nothing."""
    session = event.get("data", {}).get("object", {})
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = StripeEvent.objects.create(
                    event_id=event["id"], type=event.get("type", ""), payload=event, outcome=Outcome.IGNORED
                )
        except IntegrityError:
            return StripeEvent.objects.get(event_id=event["id"])
        task = _task_of(session)
        outcome, detail = _apply(event.get("type", ""), session, task)
        StripeEvent.objects.filter(pk=record.pk).update(outcome=outcome, detail=detail, task=task)
    record.outcome, record.detail, record.task = outcome, detail, task
    logger.info(
        "stripe_event", event_id=event["id"], type=record.type, outcome=outcome, task_id=getattr(task, "pk", None)
    )
    return record


def _task_of(session: dict) -> Task | None:
    task_id = (session.get("metadata") or {}).get("task_id") or session.get("client_reference_id")
    if not str(task_id or "").isdigit():
        return None
    return Task.objects.select_for_update().filter(pk=int(task_id)).first()


def _apply(event_type: str, session: dict, task: Task | None) -> tuple[str, str]:
    if event_type not in HANDLED_EVENTS:
        return Outcome.IGNORED, f"{event_type} is not handled"
    if task is None:
        return Outcome.FLAGGED, "no task matches this session"
    if task.stripe_session_id and session.get("id") != task.stripe_session_id:
        return _flag(task, f"session {session.get('id')} is not the task's session {task.stripe_session_id}")
    if event_type == EXPIRED_EVENT:
        if task.status != Task.Status.PENDING:
            return Outcome.IGNORED, f"expired, but the task is already {task.status}"
        task_transition(task=task, to=Task.Status.CANCELLED, actor="stripe", reason="checkout session expired")
        return Outcome.PROCESSED, "checkout expired: task cancelled"
    if event_type == ASYNC_FAILED_EVENT:
        return _payment_failed(session, task)
    if event_type == COMPLETED_EVENT and session.get("payment_status") == "unpaid":
        # A delayed method (a bank debit): the checkout is done, the money is not; Stripe sends
        # async_payment_succeeded or async_payment_failed later. Nothing to pay, refund or flag yet.
        return Outcome.IGNORED, f"session {session.get('id')} completed; awaiting its delayed payment"
    if task.status == Task.Status.CANCELLED:
        return _flag(task, "paid after the task was cancelled: refund the client")
    if task.status != Task.Status.PENDING:
        if not TaskEvent.objects.filter(task=task, to_status=Task.Status.PAID, actor="stripe").exists():
            return _flag(task, f"paid through Stripe, but already {task.status} by other means: refund one payment")
        return Outcome.IGNORED, f"the task is already {task.status}"
    problem = _payment_problem(session, task)
    if problem:
        return _flag(task, problem)
    task_transition(task=task, to=Task.Status.PAID, actor="stripe", reason=f"{event_type} {session.get('id')}")
    task_unflag(task=task, note=_note(_failure_of(session)), actor="stripe")
    return Outcome.PROCESSED, "paid"


def _failure_of(session: dict) -> str:
    return (
        f"the delayed payment of session {session.get('id')} failed: ask the client to pay another way, "
        "then mark the task paid or cancel it"
    )


def _payment_failed(session: dict, task: Task) -> tuple[str, str]:
    if task.status == Task.Status.PENDING:
        return _flag(task, _failure_of(session))
    if TaskEvent.objects.filter(task=task, to_status=Task.Status.PAID, actor="stripe").exists():
        # Stripe sends one outcome per payment: a failure after its success needs a person.
        session_id = session.get("id")
        return _flag(task, f"session {session_id} was paid, then its delayed payment failed: check it in Stripe")
    return Outcome.IGNORED, f"delayed payment failed, but the task is already {task.status} by other means"


def _payment_problem(session: dict, task: Task) -> str:
    if session.get("payment_status") != "paid":
        return f"payment_status is {session.get('payment_status')!r}, not 'paid'"
    amount, currency = session.get("amount_total"), str(session.get("currency") or "").upper()
    if amount != task.price_cents or currency != task.currency:
        return f"paid {amount} {currency}, but the task costs {task.price_cents} {task.currency}"
    return ""


def _note(problem: str) -> str:
    return f"Stripe: {problem}"


def _flag(task: Task, problem: str) -> tuple[str, str]:
    """Leave the task as it is and ask a person to look."""
    task_flag(task=task, note=_note(problem), actor="stripe")
    return Outcome.FLAGGED, problem
