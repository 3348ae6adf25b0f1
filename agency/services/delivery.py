"""Deliverables and the client's delivery link (docs/tasks.md).

A link is a random token shown once (in the e-mail to the client); only its
SHA-256 is stored. It is valid `DELIVERY_LINK_TTL_DAYS` from completion for
`DELIVERY_MAX_DOWNLOADS` file downloads, counted with a compare-and-set so
concurrent downloads never pass the limit. Failed attempts are counted in
the shared cache per client address (an IPv6 /64 counts as one) and per
task: an address past its limit is refused before any token is looked at; a
task past its limit answers wrong tokens with 429, so guessing gets nowhere,
while its client's real link keeps working. When the cache is down the counters
fail open (agency/cache.py): the token's 256 bits are the protection, and a
cache outage must not lock clients out of files they paid for.
"""

import hashlib
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from agency.cache import CACHE_OUTAGES, cache_outage_tolerated
from agency.errors import DomainError
from agency.models import ClientEmail, Deliverable, DeliveryLink, Task
from agency.outbox import Outbox, mail_send, outbox_kick, outbox_relay
from agency.services.tasks import task_flag
from tracing.context import trace_carrier

logger = structlog.get_logger(__name__)


class DeliveryRefused(Exception):
    """The link cannot be used (unknown, expired, revoked or used up)."""


@dataclass(eq=False)
class DeliveryThrottled(Exception):
    """Too many failed attempts from one address: the next is heard in `retry_after` seconds."""

    retry_after: int


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def deliverable_add(*, task: Task, name: str, content: bytes, content_type: str) -> Deliverable:
    deliverable = Deliverable(
        task=task,
        name=name,
        content_type=content_type,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
    )
    deliverable.file.save(name, ContentFile(content))  # stores the file, then saves the row
    return deliverable


@dataclass(frozen=True)
class IssuedLink:
    link: DeliveryLink
    token: str

    @property
    def path(self) -> str:
        return reverse("delivery-page", args=[self.link.task_id, self.token])


def delivery_link_issue(*, task: Task) -> IssuedLink:
    """A new link for a completed task. The token exists only in the returned value."""
    if task.status != Task.Status.COMPLETED:
        raise DeliveryRefused(f"Task #{task.pk} is {task.status}, not completed.")
    token = secrets.token_urlsafe(32)
    # The first link runs from completion; one sent again later (an operator's new link, long after)
    # runs from now, or it would be born expired.
    first = not DeliveryLink.objects.filter(task=task).exists()
    start = (task.completed_at or timezone.now()) if first else timezone.now()
    link = DeliveryLink.objects.create(
        task=task,
        token_hash=token_digest(token),
        expires_at=start + timedelta(days=settings.DELIVERY_LINK_TTL_DAYS),
        max_downloads=settings.DELIVERY_MAX_DOWNLOADS,
    )
    return IssuedLink(link=link, token=token)


# --- The client's e-mail, through the outbox ------------------------------------------------


def delivery_email_enqueue(*, task: Task) -> ClientEmail | None:
    """Queue the e-mail that brings the client a fresh delivery link (None: the task has no client).

    Call it inside the transaction that completes the task (or in an operator's
    request for a new link): the row commits with it, and the relay sends it after.
    """
    if task.status != Task.Status.COMPLETED:
        raise DeliveryRefused(f"Task #{task.pk} is {task.status}, not completed.")
    if not task.client_id:
        return None
    email = ClientEmail.objects.create(
        kind=ClientEmail.Kind.DELIVERY_LINK,
        task=task,
        to=task.client.email,
        next_attempt_at=timezone.now(),
        trace_context=trace_carrier(),
    )
    transaction.on_commit(client_emails_relay_kick)  # the kick itself never raises
    return email


def _delivery_email_send(email: ClientEmail) -> None:
    """Issue a link, e-mail it; if the e-mail fails, the link dies with it."""
    task = email.task
    issued = delivery_link_issue(task=task)
    ClientEmail.objects.filter(pk=email.pk).update(link=issued.link)
    url = settings.PUBLIC_BASE_URL.rstrip("/") + issued.path
    try:
        mail_send(
            subject=f"Your delivery is ready: {task.title}",
            body=(
                f"The work on '{task.title}' is complete.\n\nDownload it here: {url}\n\n"
                f"The link works for {settings.DELIVERY_LINK_TTL_DAYS} days and "
                f"{settings.DELIVERY_MAX_DOWNLOADS} downloads.\n"
            ),
            to=[email.to],
            delivery_id=f"client-email-{email.pk}",
        )
    except BaseException:
        DeliveryLink.objects.filter(pk=issued.link.pk).update(revoked_at=timezone.now())
        raise


def _delivery_email_stale(email: ClientEmail) -> str:
    status = Task.objects.filter(pk=email.task_id).values_list("status", flat=True).first()
    return "" if status == Task.Status.COMPLETED else f"The task is {status}, not completed."


def _delivery_email_dead(email: ClientEmail, error: str) -> None:
    note = f"The delivery e-mail to {email.to} was not sent ({error}); check the address, then send a new link."
    task_flag(task=email.task, note=note, actor="outbox")


CLIENT_EMAILS = Outbox(
    model=ClientEmail,
    name="client_email",
    send=_delivery_email_send,
    span_name=lambda email: f"email {email.kind}",
    stale=_delivery_email_stale,
    on_dead=_delivery_email_dead,
    select_related=("task",),
)


def client_emails_relay(*, now: datetime | None = None, limit: int | None = None, on_row=None) -> dict:
    """Send the clients' due e-mails, forget long-sent ones: beat, the cycle and each kick run this."""
    return outbox_relay(CLIENT_EMAILS, now=now, limit=limit, on_row=on_row)


def client_emails_relay_kick() -> None:
    # By name, as every Celery task the core's services start: the task modules sit above them.
    outbox_kick(current_app.tasks["agency.client_emails_relay"], name="client_emails_relay")


def delivery_link_revoke(*, link: DeliveryLink, actor: str) -> DeliveryLink:
    """Stop a link at once (a leaked e-mail, a client who should no longer have the files): from
    then on its page and downloads answer like an unknown link's. Other links of the task still work."""
    revoked = DeliveryLink.objects.filter(pk=link.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if not revoked:
        raise DomainError("This delivery link is already revoked.", existing_id=link.pk)
    link.refresh_from_db(fields=["revoked_at"])
    logger.info("delivery_link_revoked", task_id=link.task_id, link_id=link.pk, actor=actor)
    return link


def client_bucket(ip: str) -> str:
    """The address a failure is counted against: IPv6 clients by their /64, as they own all of it."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "unknown"
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _counter(key: str) -> int:
    return cache.get(key) or 0


def _task_key(task_id: int) -> str:
    return f"delivery:fail:task:{task_id}"


def _ip_key(ip: str) -> str:
    return f"delivery:fail:ip:{client_bucket(ip)}"


def delivery_throttle_check(*, ip: str) -> None:
    """Refuse early when this address has failed too often lately (never when the cache is down)."""
    try:
        failures = _counter(_ip_key(ip))
    except CACHE_OUTAGES as exc:
        cache_outage_tolerated(exc, use="delivery_throttle")
        return
    if failures >= settings.DELIVERY_MAX_FAILURES_PER_IP:
        raise DeliveryThrottled(retry_after=settings.DELIVERY_FAILURE_WINDOW_SECONDS)


def delivery_failure_record(*, task_id: int, ip: str) -> None:
    """Count a failed attempt; once a task has too many, wrong tokens for it answer 429 instead of 404.

    Without the cache the attempt goes uncounted (the caller answers its usual 404).
    """
    try:
        for key in (_task_key(task_id), _ip_key(ip)):
            _count(key)
        task_failures = _counter(_task_key(task_id))
    except CACHE_OUTAGES as exc:
        cache_outage_tolerated(exc, use="delivery_throttle")
        return
    if task_failures > settings.DELIVERY_MAX_FAILURES_PER_TASK:
        raise DeliveryThrottled(retry_after=settings.DELIVERY_FAILURE_WINDOW_SECONDS)


def _count(key: str) -> None:
    # add() then incr(): atomic in a shared cache, and the window starts at the first failure.
    cache.add(key, 0, timeout=settings.DELIVERY_FAILURE_WINDOW_SECONDS)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=settings.DELIVERY_FAILURE_WINDOW_SECONDS)


def delivery_link_open(*, task_id: int, token: str) -> DeliveryLink:
    """The usable link for this task and token, or `DeliveryRefused`."""
    link = (
        DeliveryLink.objects.select_related("task")
        .filter(task_id=task_id, token_hash=token_digest(token), revoked_at__isnull=True)
        .first()
    )
    # Unknown, revoked, expired or used up: one refusal for all, so probing learns nothing.
    if link is None or link.expires_at <= timezone.now() or link.downloads >= link.max_downloads:
        raise DeliveryRefused
    return link


def delivery_download_count(*, link: DeliveryLink) -> None:
    """Count one download, or refuse if the limit or the expiry was reached meanwhile."""
    counted = DeliveryLink.objects.filter(
        pk=link.pk, downloads__lt=F("max_downloads"), expires_at__gt=timezone.now(), revoked_at__isnull=True
    ).update(downloads=F("downloads") + 1)
    if not counted:
        raise DeliveryRefused
    logger.info("delivery_download", task_id=link.task_id, link_id=link.pk)
