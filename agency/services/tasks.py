"""Tasks: creation, the state machine every writer goes through, cancellation."""

import uuid
from dataclasses import dataclass

import structlog
from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, F, TextField, Value, When
from django.db.models.functions import Concat
from django.utils import timezone

from agency import pricing
from agency.errors import DomainError
from agency.models import Client, Domain, Task, TaskEvent
from agency.models.tasks import private_storage
from agency.services.uploads import ValidatedUpload

logger = structlog.get_logger(__name__)

S = Task.Status
# The only moves a task can make (docs/tasks.md). completed, failed and cancelled
# are terminal: running a task again is a new attempt via the escalation
# inbox, never a reset.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.PAID, S.CANCELLED}),
    S.PAID: frozenset({S.PLANNING, S.CANCELLED}),
    S.PLANNING: frozenset({S.PROCESSING, S.FAILED, S.ESCALATED}),
    S.PROCESSING: frozenset({S.REVIEWING, S.FAILED, S.ESCALATED}),
    S.REVIEWING: frozenset({S.COMPLETED, S.PROCESSING, S.ESCALATED}),
    S.ESCALATED: frozenset({S.PROCESSING, S.COMPLETED, S.FAILED}),
}


class InvalidTransition(DomainError):
    code = "invalid_transition"


def task_transition(*, task: Task, to: str, actor: str, reason: str = "", holder: str | None = None, **fields) -> Task:
    """Move `task` from the status it was loaded with to `to`, or raise `InvalidTransition`.

    A compare-and-set: the UPDATE matches only while the row still has the
    status the caller saw, so of two concurrent writers exactly one wins and
    the other gets `InvalidTransition`. The winner writes one audit event in
    the same transaction. `fields` are other columns set by the same UPDATE.
    With `holder`, the move also needs the work pipeline's lease to be that
    worker's: a worker whose task was taken over moves nothing.
    """
    current = task.status
    if {"status", "paid_at", "completed_at"} & fields.keys():
        raise ValueError("status and its timestamps are set by the transition itself")
    if to not in TRANSITIONS.get(current, frozenset()):
        raise InvalidTransition(f"A {current} task cannot become {to}.", existing_id=task.pk)
    now = timezone.now()
    changes = {"status": to, "updated_at": now, **fields}
    if to == S.PAID:
        changes["paid_at"] = now
    elif to == S.COMPLETED:
        changes["completed_at"] = now
    with transaction.atomic():
        claimed = Task.objects.filter(pk=task.pk, status=current)
        if holder is not None:
            claimed = claimed.filter(lease_owner=holder)
        if not claimed.update(**changes):
            actual = Task.objects.filter(pk=task.pk).values_list("status", flat=True).first()
            if actual == current:  # only the lease differed
                raise InvalidTransition(
                    f"Another worker holds the task now; {holder} cannot move it.", existing_id=task.pk
                )
            raise InvalidTransition(
                f"The task is {actual} now, not {current}; it cannot become {to}.", existing_id=task.pk
            )
        TaskEvent.objects.create(task_id=task.pk, from_status=current, to_status=to, actor=actor, reason=reason)
        for name, value in changes.items():
            setattr(task, name, value)
        if to == S.COMPLETED:
            _on_completed(task)
        elif to == S.PAID:
            # robust: the payment is committed whatever happens to the broker; a paid task
            # that was not handed over stays visible in `paid`.
            transaction.on_commit(lambda: _hand_to_pipeline(task.pk), robust=True)
    logger.info("task_transition", task_id=task.pk, from_status=current, to_status=to, actor=actor)
    return task


def _on_completed(task: Task) -> None:
    """In the completing transaction: the client's counters and the outbox row of its delivery e-mail."""
    from agency.services.delivery import delivery_email_enqueue

    if task.client_id:
        Client.objects.filter(pk=task.client_id).update(
            completed_tasks=F("completed_tasks") + 1, spent_cents=F("spent_cents") + task.price_cents
        )
    delivery_email_enqueue(task=task)


def _hand_to_pipeline(task_id: int) -> None:
    # By name: the pipeline sits above the core's services (it escalates), so they do not import it.
    current_app.tasks["agency.task_work"].delay(task_id)


def client_for_email(*, email: str, name: str = "") -> Client:
    """The client with this e-mail address (any case), created on first sight."""
    normalized = Client.normalize_email(email)
    same_email = Client.objects.filter(email_normalized=normalized)
    existing = same_email.first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return Client.objects.create(email=email.strip(), email_normalized=normalized, name=name)
    except IntegrityError:  # created concurrently: the constraint is the guarantee
        return same_email.get()


@dataclass(frozen=True)
class TaskOrder:
    """What a client or integration asks for."""

    domain: Domain
    title: str
    description: str
    complexity: str
    urgency: str
    client_email: str
    client_name: str = ""
    upload: ValidatedUpload | None = None


def task_create(
    *, order: TaskOrder, payment: str, actor: str, work_key: uuid.UUID | None = None
) -> tuple[Task, str | None]:
    """Create a priced task (with its creation event). Returns it and, for `stripe`, the
    Checkout URL to pay at; prepaid tasks become `paid` at once.

    The price is the quote for this client at this moment: the discount quoted
    is the discount charged. A `stripe` task is the claim of the outbox's shape:
    committed in `pending` first, then Stripe is called outside any transaction,
    then the session is recorded by compare-and-set. When Stripe fails the task
    is cancelled (and its input removed): no pending orphan, and no writer ever
    waited on Stripe. `work_key` (the caller's Idempotency-Key claim) names the
    task, so a creation retried after a crash resumes the same task.
    """
    if payment not in (Task.Payment.PREPAID, Task.Payment.STRIPE):
        raise ValueError(f"Unknown payment mode {payment!r}")
    from agency.services.payments import checkout_open, stripe_client

    if payment == Task.Payment.STRIPE:
        stripe_client()  # PaymentsNotConfigured before anything is written
    quote = pricing.quote(
        domain=order.domain, complexity=order.complexity, urgency=order.urgency, client_email=order.client_email
    )
    try:
        task, created = _task_insert(order=order, payment=payment, actor=actor, quote=quote, work_key=work_key)
    except BaseException:
        _input_discard(order.upload)  # the rows rolled back; the stored file must go too
        raise
    if not created:
        _input_discard(order.upload)  # the resumed task keeps the input it was created with
    if payment == Task.Payment.PREPAID:
        return task, None
    return task, checkout_open(task=task, actor=actor)


def _input_discard(upload: ValidatedUpload | None) -> None:
    if upload is not None and upload.stored_name:
        private_storage().delete(upload.stored_name)


def _task_insert(*, order: TaskOrder, payment: str, actor: str, quote, work_key: uuid.UUID | None) -> tuple[Task, bool]:
    """The new task, committed (prepaid ones already paid); or the one `work_key` created before
    (a creation resumed after a crash, or by a concurrent retry): its unique key says so."""
    try:
        return _task_insert_new(order=order, payment=payment, actor=actor, quote=quote, work_key=work_key), True
    except IntegrityError:
        existing = Task.objects.filter(checkout_key=work_key).first() if work_key is not None else None
        if existing is None:
            raise
        return existing, False


def _task_insert_new(*, order: TaskOrder, payment: str, actor: str, quote, work_key: uuid.UUID | None) -> Task:
    with transaction.atomic():
        task = Task(
            client=client_for_email(email=order.client_email, name=order.client_name),
            domain=order.domain,
            title=order.title,
            description=order.description,
            complexity=order.complexity,
            urgency=order.urgency,
            base_price_cents=quote.base_price_cents,
            discount_cents=quote.discount_cents,
            price_cents=quote.price_cents,
            currency=quote.currency,
            is_high_value=quote.is_high_value,
            payment=payment,
            checkout_key=work_key or uuid.uuid4(),
        )
        if order.upload is not None:
            order.upload.attach_to(task)
        task.save()
        TaskEvent.objects.create(task=task, from_status="", to_status=task.status, actor=actor, reason="created")
        if payment == Task.Payment.PREPAID:
            task_transition(task=task, to=S.PAID, actor=actor, reason="prepaid by a trusted integration")
    return task


def task_create_marketplace(
    *, domain: Domain, title: str, description: str, price_cents: int, currency: str, actor: str, work_key: uuid.UUID
) -> Task:
    """A task won on a marketplace: already paid (the marketplace holds the money) and without a client
    of ours. `work_key` names it (the bid's idempotency key), so a win reported twice, or by two
    processes at once, makes one task."""
    existing = Task.objects.filter(checkout_key=work_key).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            task = Task.objects.create(
                source=Task.Source.MARKETPLACE,
                payment=Task.Payment.MARKETPLACE,
                domain=domain,
                title=title[:200],
                description=description,
                complexity=Task.Complexity.MEDIUM,
                base_price_cents=price_cents,
                price_cents=price_cents,
                currency=currency,
                is_high_value=price_cents >= settings.HIGH_VALUE_THRESHOLD_CENTS,
                checkout_key=work_key,
            )
            TaskEvent.objects.create(task=task, from_status="", to_status=task.status, actor=actor, reason="bid won")
            return task_transition(task=task, to=S.PAID, actor=actor, reason="escrowed by the marketplace")
    except IntegrityError:  # made concurrently: the unique key is the guarantee
        return Task.objects.get(checkout_key=work_key)


def task_flag(*, task: Task, note: str, actor: str) -> None:
    """Ask a person to look at `task` (a payment to refund, a mismatch to check), whatever its status.

    The note is added below any earlier one, so a second flag never hides the first; an
    operator clears the flag in the admin once it is dealt with.
    """
    note = note.strip()
    if not note:
        raise ValueError("A flag needs a note saying what to look at.")
    Task.objects.filter(pk=task.pk).update(
        needs_operator=True,
        operator_note=Case(
            When(operator_note="", then=Value(note)),
            default=Concat(F("operator_note"), Value("\n" + note)),
            output_field=TextField(),
        ),
        updated_at=timezone.now(),
    )
    task.refresh_from_db(fields=["needs_operator", "operator_note", "updated_at"])
    logger.warning("task_flagged", task_id=task.pk, note=note, actor=actor)


def task_unflag(*, task: Task, note: str, actor: str) -> bool:
    """Withdraw a note an earlier `task_flag` added, now that it no longer holds (a failed payment
    paid after all). Only lines equal to `note` go; the flag stays up while other notes remain.

    A compare-and-set on the note as read: if an operator edits it meanwhile, their text wins and
    the note stays (returns False), which costs a person a look, never a lost note.
    """
    note = note.strip()
    seen = Task.objects.filter(pk=task.pk).values_list("operator_note", flat=True).get()
    lines = seen.split("\n")
    kept = "\n".join(line for line in lines if line.strip() != note)
    if kept == seen:
        return False
    changes = {"operator_note": kept, "updated_at": timezone.now()}
    if not kept.strip():
        changes["needs_operator"] = False
    if not Task.objects.filter(pk=task.pk, operator_note=seen).update(**changes):
        return False
    task.refresh_from_db(fields=["needs_operator", "operator_note", "updated_at"])
    logger.info("task_unflagged", task_id=task.pk, note=note, actor=actor)
    return True


REFUND_AFTER_CANCEL = "Refund the client: cancelled after payment."


def task_cancel(*, task: Task, actor: str, reason: str = "") -> Task:
    """Cancel a pending or paid task. A paid one is flagged for a refund in the same transaction:
    the transition is a compare-and-set on `paid`, so the flag goes with exactly the cancels that
    took money back from the pipeline."""
    was_paid = task.status == S.PAID
    with transaction.atomic():
        task_transition(task=task, to=S.CANCELLED, actor=actor, reason=reason or "cancelled")
        if was_paid:
            task_flag(task=task, note=REFUND_AFTER_CANCEL, actor=actor)
    return task
