"""The transactional outbox: how every external side effect leaves the system (docs/architecture.md).

A row is written inside the transaction that makes the side effect necessary
(an escalation's notifications, a client's delivery e-mail), so a rolled-back
change sends nothing. Relays send the rows after commit, from beat, the agency
cycle, a command or a kick after commit, in any number of processes at once.
Each kind of row is an `Outbox`: its model (with the `OutboxRow` fields) and
how to send one; this module is the relay they all share:

- A claim is one UPDATE that sets a fresh `claim_token` on due rows and
  re-checks "due" itself, so two relays never both own a row, with or without
  row locks. The rows are read without locks first: InnoDB locks every row a
  sorted locking read looks at, so `skip_locked` would starve a second relay.
- Sending happens outside any transaction. The claim is renewed just before
  each send, and finishing a row is a compare-and-set on its claim token: a
  relay that outlived its lease cannot overwrite the work of the relay that
  took the row over.
- Failures back off exponentially (`NOTIFY_BACKOFF_*`, or sooner never than
  the remote's `Retry-After`); a row is dead after `NOTIFY_MAX_ATTEMPTS` or
  at once on an answer no retry can fix, and its outbox may react (flag a task).
"""

import contextvars
import smtplib
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from agency.models.outbox import OutboxStatus as Status
from tracing.context import trace_carrier, trace_continued

logger = structlog.get_logger(__name__)

OUTCOMES = ("sent", "retry_later", "dead", "cancelled", "lost")
# Rounds a claim reads again after other relays took every row it read.
CLAIM_ROUNDS = 5


class SendFailed(Exception):
    """A side effect did not happen. `permanent`: no retry can fix it; `retry_after`: the remote's wish."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None, response=None):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.response = response


def short(text: str, limit: int = 120) -> str:
    """What may be stored of a remote answer or an error: printable, one line, short."""
    text = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mail_send(*, subject: str, body: str, to: list[str], delivery_id: str) -> None:
    """Send one e-mail through Django's mail (`EMAIL_URL`), or raise `SendFailed`.

    Carries the current trace (`traceparent`) and the outbox row (`X-Agency-Delivery`) as headers;
    each network operation is bounded by `EMAIL_TIMEOUT` (Django's SMTP backend applies it).
    """
    message = EmailMessage(
        subject=subject, body=body, to=to, headers={"X-Agency-Delivery": delivery_id, **trace_carrier()}
    )
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        # 4xx is "try later" (greylisting, a full mailbox); only 5xx for every recipient is final.
        final = all(code >= 500 for code, _ in exc.recipients.values())
        raise SendFailed(f"Recipients refused: {exc.recipients}", permanent=final) from exc
    except ValueError as exc:  # an address Django cannot even encode
        raise SendFailed(f"Invalid address: {exc}", permanent=True) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise SendFailed(f"{type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class Outbox:
    """One kind of outbox row and what sending one means.

    `send(row)` does the side effect or raises `SendFailed`; `stale(row)` says why a row must not go
    out any more ("" when it should); `held_back` excludes rows that must wait (an earlier row of the
    same conversation still unsent); `on_dead(row, error)` runs when a row is given up.
    """

    model: type[models.Model]
    name: str
    send: Callable[[models.Model], None]
    span_name: Callable[[models.Model], str]
    stale: Callable[[models.Model], str] = lambda row: ""
    held_back: Callable[[], Q] | None = None
    on_dead: Callable[[models.Model, str], None] | None = None
    select_related: tuple[str, ...] = field(default=())


def outbox_due(now: datetime) -> Q:
    return Q(status=Status.PENDING, next_attempt_at__lte=now) | Q(status=Status.SENDING, claimed_until__lt=now)


def outbox_claim(outbox: Outbox, *, now: datetime, limit: int) -> tuple[uuid.UUID, list]:
    """Claim up to `limit` due rows for this relay; returns the claim token and the rows."""
    token = uuid.uuid4()
    rows = outbox.model.objects
    candidates = rows.filter(outbox_due(now))
    if outbox.held_back is not None:
        candidates = candidates.exclude(outbox.held_back())
    candidates = candidates.order_by("next_attempt_at", "pk")
    for _ in range(CLAIM_ROUNDS):
        ids = list(candidates.values_list("pk", flat=True)[:limit])
        if not ids:
            return token, []
        claimed = rows.filter(outbox_due(now), pk__in=ids).update(
            status=Status.SENDING,
            claim_token=token,
            claimed_until=now + timedelta(seconds=settings.NOTIFY_CLAIM_SECONDS),
            attempts=F("attempts") + 1,
        )
        if claimed:
            mine = rows.filter(pk__in=ids, claim_token=token).select_related(*outbox.select_related)
            return token, list(mine.order_by("pk"))
    return token, []


def backoff_seconds(attempts: int) -> float:
    """Wait after the `attempts`-th failed send: base · 2^(attempts-1), capped."""
    return float(min(settings.NOTIFY_BACKOFF_MAX_SECONDS, settings.NOTIFY_BACKOFF_BASE_SECONDS * 2 ** (attempts - 1)))


def outbox_row_send(outbox: Outbox, *, row, token: uuid.UUID, now: datetime) -> str:
    """Send one claimed row and record the outcome (one of `OUTCOMES`).

    "lost" means this relay's claim ran out and another relay took the row
    over (then nothing is sent here). The claim is renewed just before
    sending, so a long batch never sends a row that another relay has
    meanwhile claimed; a single send would have to outlast the whole lease
    (`NOTIFY_CLAIM_SECONDS`, many times the per-operation timeout).
    """
    mine = outbox.model.objects.filter(pk=row.pk, claim_token=token)
    lease = timedelta(seconds=settings.NOTIFY_CLAIM_SECONDS)
    if not mine.filter(claimed_until__gt=now).update(claimed_until=now + lease):
        logger.warning(f"{outbox.name}_claim_lost", row_id=row.pk)
        return "lost"
    done = {"claim_token": None, "claimed_until": None}
    if row.attempts > settings.NOTIFY_MAX_ATTEMPTS:  # claimed again and again by relays that died
        return _dead(outbox, row, mine, f"Gave up after {row.attempts - 1} attempts.", done)
    stale = outbox.stale(row)
    if stale:
        mine.update(status=Status.CANCELLED, last_error=stale, **done)
        return "cancelled"
    with trace_continued(row.trace_context, outbox.span_name(row)) as span:
        span.set_attribute("agency.outbox_row", f"{outbox.name}:{row.pk}")
        try:
            outbox.send(row)
        except Exception as exc:
            # Anything else is a bug or a bad configuration: retried like a failure, never blocking the batch.
            failure = exc if isinstance(exc, SendFailed) else SendFailed(f"{type(exc).__name__}: {exc}")
            return _failed(outbox, row, mine, failure, now=now, done=done)
    if not mine.update(status=Status.SENT, sent_at=timezone.now(), last_error="", **done):
        logger.error(f"{outbox.name}_sent_after_claim_lost", row_id=row.pk)
    logger.info(f"{outbox.name}_sent", row_id=row.pk)
    return "sent"


def _failed(outbox: Outbox, row, mine, exc: SendFailed, *, now: datetime, done: dict) -> str:
    error = short(str(exc), 200)
    if exc.permanent or row.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
        return _dead(outbox, row, mine, error, done)
    wait = max(backoff_seconds(row.attempts), exc.retry_after or 0)
    mine.update(status=Status.PENDING, next_attempt_at=now + timedelta(seconds=wait), last_error=error, **done)
    logger.warning(f"{outbox.name}_retry", row_id=row.pk, error=error, wait_s=wait)
    return "retry_later"


def _dead(outbox: Outbox, row, mine, error: str, done: dict) -> str:
    if mine.update(status=Status.DEAD, last_error=error, **done) and outbox.on_dead is not None:
        outbox.on_dead(row, error)
    logger.error(f"{outbox.name}_dead", row_id=row.pk, error=error)
    return "dead"


def outbox_send_due(
    outbox: Outbox, *, now: datetime | None = None, limit: int | None = None, on_row=None
) -> dict[str, int]:
    """Send due rows, batch by batch, until none is due or `limit` rows were handled.

    Safe to run in several processes at once. `now` is for a controlled clock
    in tests; `on_row(outcome)` is called after each row (progress bars).
    """
    counts = dict.fromkeys(OUTCOMES, 0)
    handled = 0
    while limit is None or handled < limit:
        batch = settings.NOTIFY_BATCH_SIZE if limit is None else min(settings.NOTIFY_BATCH_SIZE, limit - handled)
        token, rows = outbox_claim(outbox, now=now or timezone.now(), limit=batch)
        if not rows:
            break
        for row in rows:
            outcome = outbox_row_send(outbox, row=row, token=token, now=now or timezone.now())
            counts[outcome] += 1
            handled += 1
            if on_row is not None:
                on_row(outcome)
    return counts


def outbox_relay(outbox: Outbox, *, now: datetime | None = None, limit: int | None = None, on_row=None) -> dict:
    """One relay run: send what is due, then forget what is long done. Rows queued during the run
    (by timers, say) are sent by it, not by an extra kick each."""
    with relaying():
        sent = outbox_send_due(outbox, now=now, limit=limit, on_row=on_row)
        return sent | {"purged": outbox_purge(outbox.model, now=now)}


def outbox_purge(model: type[models.Model], *, now: datetime | None = None) -> int:
    """Forget sent and cancelled rows older than `NOTIFY_KEEP_DAYS`; dead ones stay for an operator."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.NOTIFY_KEEP_DAYS)
    deleted, _ = model.objects.filter(created_at__lt=cutoff, status__in=[Status.SENT, Status.CANCELLED]).delete()
    return deleted


# Set while this thread relays: rows it queues itself (timers) need no extra kick.
_relaying = contextvars.ContextVar("relaying", default=False)


@contextmanager
def relaying() -> Iterator[None]:
    """Mark this thread as a relay: rows it queues are sent by it, not by an extra kick."""
    marker = _relaying.set(True)
    try:
        yield
    finally:
        _relaying.reset(marker)


def outbox_kick(task, *, name: str) -> None:
    """Ask a worker to run relay `task` now; if the broker is down, beat or a command will (rows wait)."""
    if _relaying.get():
        return
    try:
        task.apply_async(retry=False)
    except Exception as exc:  # any broker failure: the rows are safe in the table
        logger.warning(f"{name}_kick_failed", error=f"{type(exc).__name__}: {exc}")
