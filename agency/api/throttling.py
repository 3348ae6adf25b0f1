from rest_framework.throttling import SimpleRateThrottle

from agency.api.auth import principal_of
from agency.cache import CACHE_OUTAGES, cache_outage_tolerated


class PrincipalRateThrottle(SimpleRateThrottle):
    """One budget per API key or staff user, anonymous callers per address.

    Counters live in the default cache, which is shared by every process once
    `CACHE_URL` points at Redis. Without the cache the throttle fails open (agency/cache.py):
    a rate limit must not turn a cache outage into an API outage.
    """

    scope = "principal"

    def get_cache_key(self, request, view) -> str:
        ident = principal_of(request) or f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except CACHE_OUTAGES as exc:
            cache_outage_tolerated(exc, use="api_throttle")
            return True
