"""API authentication and access (docs/api.md).

`Authorization: Bearer <key>` for integrations, whose key has one scope
(read < write < operator); a logged-in staff user (the admin session) is
also accepted and has exactly the rights its Django permissions give, the
same ones the admin checks.
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


# What a view needs, per HTTP method: (API-key scope, Django permissions of a staff session).
Access = tuple[str, tuple[str, ...]]
_READ_METHODS = {"GET", "HEAD", "OPTIONS"}


class ApiAccess(permissions.BasePermission):
    """Who may call a view: the project's one permission class (the default of every API view).

    A view declares `api_access = {"GET": ("read", ("agency.view_task",)), "POST": (…)}`: the scope an
    API key needs and the Django permissions a staff session needs (none listed: any active staff user).
    A method the view handles but does not declare is refused to everyone, so a new view is closed
    until it says who may use it. The declaration is plain data, so apps below the core (tracing) declare theirs
    without importing anything from here.
    """

    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view) -> bool:
        method = "GET" if request.method in _READ_METHODS else request.method
        access: Access | None = getattr(view, "api_access", {}).get(method)
        if access is None:
            # Not declared: closed, unless the view has no such method at all (then it answers 405).
            return not hasattr(view, request.method.lower())
        scope, perms = access
        if isinstance(request.auth, ApiKey):
            if request.auth.allows(scope):
                return True
            self.message = f"This endpoint needs the '{scope}' scope; the key has '{request.auth.scope}'."
            return False
        user = getattr(request, "user", None)
        if user is None or not (user.is_authenticated and user.is_active and user.is_staff):
            return False
        if user.has_perms(perms):
            return True
        missing = sorted(p for p in perms if not user.has_perm(p))
        self.message = f"Your account lacks the permission(s) {', '.join(missing)}."
        return False
