"""API keys: issue and revoke."""

import hashlib
import secrets

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from agency.errors import DomainError
from agency.models import ApiKey

KEY_PREFIX = "agy"


def key_digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(*, name: str, scope: str, created_by: AbstractBaseUser | None = None) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is never stored nor shown again."""
    name = name.strip()
    if not name:
        raise ValueError("An API key needs a name.")
    if scope not in ApiKey.Scope.values:
        raise ValueError(f"Unknown scope {scope!r}; choose one of {', '.join(ApiKey.Scope.values)}.")
    for _ in range(5):  # the public prefix is short; a collision is rare but possible
        prefix = secrets.token_hex(4)
        raw_key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(
                    name=name, prefix=prefix, key_hash=key_digest(raw_key), scope=scope, created_by=created_by
                )
            return api_key, raw_key
        except IntegrityError:
            continue
    raise RuntimeError("Could not find a free API key prefix.")


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if not revoked:
        raise DomainError("This API key is already revoked.", existing_id=api_key.pk)
    api_key.refresh_from_db()
    return api_key
