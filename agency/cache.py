"""The shared cache (`CACHE_URL`, Django's `RedisCache`) and what its outage raises.

Each use decides whether it fails open or closed (docs/architecture.md):

- API throttling (`PrincipalRateThrottle`) fails open: the request goes through and a warning is
  logged. The cache only holds rate budgets, so an outage must not take the whole API down.
- The delivery failure counters (`delivery_throttle_check`, `delivery_failure_record`) fail open:
  the 256-bit token is what protects a delivery, the counters only keep guessers from wasting our
  time; failing closed would lock paying clients out of their files for the length of the outage.
- Anything else that reaches the cache unguarded fails closed: `JsonErrorMiddleware` answers 503
  with `Retry-After`, like a database or broker outage.

The client's socket timeouts (`CACHE_CONNECT_TIMEOUT_SECONDS`, `CACHE_TIMEOUT_SECONDS`) make an
outage cost milliseconds per request, not the operating system's connect timeout.
"""

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = structlog.get_logger(__name__)

# What the Redis client raises when the server is down, refuses, or does not answer in time
# (its BusyLoadingError, while Redis loads its data after a restart, is a ConnectionError).
CACHE_OUTAGES: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)


def cache_outage_tolerated(exc: Exception, *, use: str) -> None:
    """Log that `use` went on without the cache (fail open); never the server's address."""
    logger.warning("cache_unavailable", use=use, fails="open", error=type(exc).__name__)
