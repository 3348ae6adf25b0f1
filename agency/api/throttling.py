from rest_framework.throttling import SimpleRateThrottle

from agency.api.auth import principal_of


class PrincipalRateThrottle(SimpleRateThrottle):
    """One budget per API key or staff user, anonymous callers per address.

    Counters live in the default cache, which is shared by every process once
    `CACHE_URL` points at Redis.
    """

    scope = "principal"

    def get_cache_key(self, request, view) -> str:
        ident = principal_of(request) or f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
