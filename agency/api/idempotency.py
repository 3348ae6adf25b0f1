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
"""

import functools
import hashlib
import json
from datetime import timedelta

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

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def _canonical(value):
    if isinstance(value, UploadedFile):
        digest = hashlib.sha256()
        for chunk in value.chunks():
            digest.update(chunk)
        value.seek(0)
        return {"file": value.name, "size": value.size, "sha256": digest.hexdigest()}
    return value


def request_fingerprint(request: Request) -> str:
    data = request.data
    # A QueryDict (form or multipart body) may repeat keys and carry files.
    body = {k: [_canonical(v) for v in vs] for k, vs in data.lists()} if hasattr(data, "lists") else data
    payload = json.dumps([request.method, request.get_full_path(), body], sort_keys=True, default=str)
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


def idempotency_complete(*, record: IdempotencyRecord, response: Response) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        status_code=response.status_code, response_body=response.data, completed_at=timezone.now()
    )


def idempotency_release(*, record: IdempotencyRecord) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk, status_code__isnull=True).delete()


class _Discarded(Exception):
    """Rolls back a request whose answer must not be stored (5xx)."""

    def __init__(self, response: Response):
        self.response = response


def idempotent(method):
    """Decorate an APIView's `post` to honour the `Idempotency-Key` header.

    The decorated method runs inside a transaction, so it must not open a
    `durable` one itself.
    """

    @functools.wraps(method)
    def wrapper(view, request: Request, *args, **kwargs):
        key = request.headers.get(HEADER)
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
        try:
            with transaction.atomic():
                IdempotencyRecord.objects.select_for_update().only("pk").get(pk=record.pk)
                response = method(view, request, *args, **kwargs)
                if response.status_code >= 500:
                    raise _Discarded(response)
                idempotency_complete(record=record, response=response)
        except _Discarded as discarded:
            idempotency_release(record=record)
            return discarded.response
        except Exception:
            idempotency_release(record=record)
            raise
        return response

    return wrapper
