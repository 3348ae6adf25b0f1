"""API authentication and scopes.

`Authorization: Bearer <key>` for integrations; a logged-in staff user (the
admin session) is also accepted and holds the operator scope.
"""

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from agency.models import ApiKey
from agency.services.api_keys import key_digest

# Refreshing `last_used_at` on every request would turn each read into a write.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


class KeyHolder:
    """The `request.user` of a call authenticated by an API key (not a login)."""

    is_authenticated = True
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key

    def __str__(self) -> str:
        return f"API key {self.api_key.prefix}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: expected 'Bearer <key>'.")
        try:
            raw_key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        api_key = ApiKey.objects.filter(key_hash=key_digest(raw_key)).first()
        if api_key is None or not api_key.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        now = timezone.now()
        if api_key.last_used_at is None or now - api_key.last_used_at > _LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        return (KeyHolder(api_key), api_key)

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class StaffSessionAuthentication(authentication.SessionAuthentication):
    """The admin session, for staff only (with CSRF protection)."""

    def authenticate(self, request: Request):
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        if not user.is_staff:
            return None
        return (user, None)


def principal_of(request: Request) -> str | None:
    """A stable name for whoever is calling: key:<id>, user:<id>, or None."""
    if isinstance(request.auth, ApiKey):
        return f"key:{request.auth.pk}"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.pk is not None:
        return f"user:{user.pk}"
    return None


def actor_of(request: Request) -> str:
    """How the audit trail names an API caller: api:key:<id>, api:user:<id>."""
    return f"api:{principal_of(request) or 'anonymous'}"


class _ScopeRequired(permissions.BasePermission):
    scope: str = ApiKey.Scope.READ
    message = "This API key lacks the required scope."

    def has_permission(self, request: Request, view) -> bool:
        if isinstance(request.auth, ApiKey):
            if request.auth.allows(self.scope):
                return True
            self.message = f"This endpoint needs the '{self.scope}' scope; the key has '{request.auth.scope}'."
            return False
        user = getattr(request, "user", None)
        return bool(user is not None and user.is_authenticated and user.is_staff)


class ReadScope(_ScopeRequired):
    scope = ApiKey.Scope.READ


class WriteScope(_ScopeRequired):
    scope = ApiKey.Scope.WRITE


class OperatorScope(_ScopeRequired):
    scope = ApiKey.Scope.OPERATOR
