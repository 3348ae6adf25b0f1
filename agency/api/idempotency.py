"""`Idempotency-Key` for creating POSTs, as a decorator on an API method.

Same key and same request → the first answer again (with
`Idempotent-Replayed: true`); same key with a different request → 409.

Transactions: the key is claimed by inserting a row and committing it
*before* the work runs, so a concurrent request with the same key sees the
claim and answers 409 while the first is in flight. The work and the stored
answer then commit together in one transaction that also holds a lock on the
claim: a crash leaves neither (the claim can be taken over after
`IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS`), and a takeover attempted while the
first request is merely slow waits for it and then finds the answer. Side
effects queued with `transaction.on_commit` (Celery tasks) go out only once
the answer is stored. An answer ≥ 500 or an exception frees the key.

A view that must call another service between its own transactions (task
creation paying through Stripe) uses `@idempotent(atomic=False)`: no
transaction around it, the answer stored after it by compare-and-set, and
its work named by the claim's `work_key` so that a takeover resumes it.
"""

import functools
import hashlib
import json
from datetime import timedelta

import structlog
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from agency.api.auth import principal_of
from agency.api.errors import Conflict
from agency.models import IdempotencyRecord

logger = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def _canonical(value):
    if isinstance(value, UploadedFile):
        digest = hashlib.sha256()
        for chunk in value.chunks():
            digest.update(chunk)
        value.seek(0)
        return (value.name, value.size, digest.hexdigest())  # a form value is a string: never this
    return value


def request_fingerprint(request: Request) -> str:
    data = request.data
    # A QueryDict (form or multipart body) may repeat keys and carry files.
    body = {k: [_canonical(v) for v in vs] for k, vs in data.lists()} if hasattr(data, "lists") else data
    payload = json.dumps([request.method, request.get_full_path(), body], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def idempotency_claim(*, principal: str, key: str, fingerprint: str) -> tuple[IdempotencyRecord, bool]:
    """Claim `key` for this request. Returns (record, is_replay)."""
    now = timezone.now()
    for _ in range(2):  # a second pass after clearing an expired record
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(principal=principal, key=key, fingerprint=fingerprint)
            return record, False
        except IntegrityError:
            pass
        existing = IdempotencyRecord.objects.filter(principal=principal, key=key).first()
        if existing is None:
            continue  # deleted between our insert and our read
        if existing.created_at < now - timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS):
            IdempotencyRecord.objects.filter(pk=existing.pk, created_at=existing.created_at).delete()
            continue
        if existing.fingerprint != fingerprint:
            raise Conflict(f"{HEADER} {key!r} was already used with a different request.", code="idempotency_mismatch")
        if existing.status_code is not None:
            return existing, True
        if existing.created_at < now - timedelta(seconds=settings.IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS):
            # Its first holder died mid-request; take over with a compare-and-set.
            taken = IdempotencyRecord.objects.filter(
                pk=existing.pk, status_code__isnull=True, created_at=existing.created_at
            ).update(created_at=now)
            if taken:
                existing.created_at = now
                return existing, False
        raise Conflict(f"A request with {HEADER} {key!r} is still being processed.", code="idempotency_in_progress")
    raise Conflict(f"{HEADER} {key!r} is contended; retry.", code="idempotency_in_progress")


def idempotency_complete(*, record: IdempotencyRecord, response: Response) -> bool:
    """Store the answer, unless another request took the claim over or answered (compare-and-set)."""
    return bool(
        IdempotencyRecord.objects.filter(pk=record.pk, status_code__isnull=True, created_at=record.created_at).update(
            status_code=response.status_code, response_body=response.data, completed_at=timezone.now()
        )
    )


def idempotency_release(*, record: IdempotencyRecord) -> None:
    """Free the key for a retry, unless another request took the claim over meanwhile (compare-and-set)."""
    IdempotencyRecord.objects.filter(pk=record.pk, status_code__isnull=True, created_at=record.created_at).delete()


class _Discarded(Exception):
    """Rolls back a request whose answer must not be stored (5xx)."""

    def __init__(self, response: Response):
        self.response = response


def idempotent(method=None, *, atomic: bool = True):
    """Decorate an APIView's `post` to honour the `Idempotency-Key` header.

    `atomic` (the default): the method and the stored answer commit together in
    one transaction, so the method must not open a `durable` one itself, nor
    call anything slow (no HTTP) since it holds the claim's row lock.

    `atomic=False`, for methods that must call out between their own
    transactions (a payment provider): the method runs outside any
    transaction and the answer is stored afterwards with a compare-and-set.
    If the process dies in between, the claim is taken over after
    `IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS` and the method runs again; it finds
    its earlier work by `request.idempotency_work_key` (the same on takeover,
    new after a 5xx released the key) and must resume it instead of doing it twice.
    """
    if method is None:
        return functools.partial(idempotent, atomic=atomic)

    @functools.wraps(method)
    def wrapper(view, request: Request, *args, **kwargs):
        key = request.headers.get(HEADER)
        request.idempotency_work_key = None
        if key is None:
            return method(view, request, *args, **kwargs)
        key = key.strip()
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise ValidationError({HEADER: [f"Must be 1 to {MAX_KEY_LENGTH} printable characters."]})
        principal = principal_of(request)
        if principal is None:  # anonymous callers would share one key space
            raise ValidationError({HEADER: ["Needs an authenticated caller."]})
        record, replay = idempotency_claim(principal=principal, key=key, fingerprint=request_fingerprint(request))
        if replay:
            return Response(record.response_body, status=record.status_code, headers={"Idempotent-Replayed": "true"})
        request.idempotency_work_key = record.work_key
        run = _run_atomic if atomic else _run_then_store
        try:
            response = run(record, lambda: method(view, request, *args, **kwargs))
        except _Discarded as discarded:
            idempotency_release(record=record)
            return discarded.response
        except Exception:
            idempotency_release(record=record)
            raise
        return response

    return wrapper


def _run_atomic(record: IdempotencyRecord, work) -> Response:
    with transaction.atomic():
        IdempotencyRecord.objects.select_for_update().only("pk").get(pk=record.pk)
        response = work()
        if response.status_code >= 500:
            raise _Discarded(response)
        idempotency_complete(record=record, response=response)
    return response


def _run_then_store(record: IdempotencyRecord, work) -> Response:
    response = work()
    if response.status_code >= 500:
        raise _Discarded(response)
    if not idempotency_complete(record=record, response=response):
        # Our claim was taken over meanwhile (we outlived the claim timeout): the work was
        # resumed by its work key, and the other request stores the answer.
        logger.warning("idempotency_answer_after_takeover", key=record.key, principal=record.principal)
    return response
