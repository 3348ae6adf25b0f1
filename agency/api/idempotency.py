"""`Idempotency-Key` for creating POSTs, as a decorator on an API method.

Same key and same request → the first answer again (with
`Idempotent-Replayed: true`); same key with a different request → 409. The
key is claimed by inserting a row *before* the work runs, so two concurrent
requests with one key cannot both create: the loser answers 409 while the
first is in flight. An answer ≥ 500 or an exception frees the key for a retry.
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
    payload = json.dumps([request.method, request.path, body], sort_keys=True, default=str)
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


def idempotent(method):
    """Decorate an APIView's `post` to honour the `Idempotency-Key` header."""

    @functools.wraps(method)
    def wrapper(view, request: Request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return method(view, request, *args, **kwargs)
        key = key.strip()
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise ValidationError({HEADER: [f"Must be 1 to {MAX_KEY_LENGTH} printable characters."]})
        principal = principal_of(request) or "anonymous"
        record, replay = idempotency_claim(principal=principal, key=key, fingerprint=request_fingerprint(request))
        if replay:
            return Response(record.response_body, status=record.status_code, headers={"Idempotent-Replayed": "true"})
        try:
            response = method(view, request, *args, **kwargs)
        except Exception:
            idempotency_release(record=record)
            raise
        if response.status_code >= 500:
            idempotency_release(record=record)
        else:
            idempotency_complete(record=record, response=response)
        return response

    return wrapper
