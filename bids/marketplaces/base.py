"""What every marketplace adapter offers, and what they share: ids, money, the token, HTTP and the breaker.

An adapter searches, places a bid, lists the agency's own bids (reconciliation) and retracts one.
Adapters raise `MarketplaceError`: `transient` when trying again later may work (timeouts, 5xx,
429, an open breaker), not when the marketplace said no. Reads retry a transient error in-process
(tenacity); placing a bid never does, because a retry of a request that may have arrived is what
reconciliation settles (docs/bids.md "Exactly once").
"""

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.db.models import F
from django.utils import timezone
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from bids.models import CREDENTIAL_ENV_PREFIX, Marketplace


class MarketplaceError(Exception):
    def __init__(self, message: str, *, transient: bool = False, status_code: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.status_code = status_code


# How much of an error's text a bid or marketplace row keeps (a remote server chooses its length).
ERROR_TEXT_MAX = 2000


def error_text(error: object) -> str:
    return str(error)[:ERROR_TEXT_MAX]


class BidsByHand(MarketplaceError):
    """The marketplace has no API for bids: an operator submits them and marks them submitted."""


@dataclass(frozen=True)
class FoundPosting:
    external_id: str
    title: str
    description: str = ""
    url: str = ""
    budget_min_cents: int | None = None
    budget_max_cents: int | None = None
    currency: str = "USD"
    skills: tuple[str, ...] = ()
    posted_at: datetime | None = None
    raw: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class RemoteBid:
    remote_id: str
    posting_external_id: str
    amount_cents: int
    status: str  # "active", "awarded", "lost" or "retracted"


class Adapter:
    """The interface; subclasses implement what their marketplace can do."""

    def __init__(self, marketplace: Marketplace):
        self.marketplace = marketplace

    def search(self) -> list[FoundPosting]:
        raise NotImplementedError

    def bid_place(self, *, posting_external_id: str, amount_cents: int, proposal: str, idempotency_key: str) -> str:
        """Place a bid; returns the marketplace's id for it."""
        raise BidsByHand(f"{self.marketplace.get_kind_display()} takes no bids by API.")

    def bids_mine(self) -> list[RemoteBid]:
        raise BidsByHand(f"{self.marketplace.get_kind_display()} cannot list bids by API.")

    def bid_retract(self, *, remote_id: str) -> None:
        raise BidsByHand(f"{self.marketplace.get_kind_display()} cannot retract bids by API.")


# --- Ids and money ---------------------------------------------------------------------------

TRACKING_PARAMS = ("utm_", "ref", "fbclid", "gclid")


def canonical_url(url: str) -> str:
    """The same job's URL written the same way: scheme and host lower-case, default port, fragment and
    tracking parameters dropped, the other query parameters sorted."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    if port and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    query = sorted(
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if not key.lower().startswith(TRACKING_PARAMS)
    )
    return urlunsplit((scheme, host, parts.path or "/", urlencode(query), ""))


def external_id_for(*, source_id: object, url: str) -> str:
    """The marketplace's own id when it gives one, else SHA-256 of the canonical URL (the same in every
    process, unlike Python's `hash`)."""
    if source_id not in (None, ""):
        return str(source_id).strip()[:100]
    if not url:
        raise MarketplaceError("A posting has neither an id nor a URL.")
    return hashlib.sha256(canonical_url(url).encode()).hexdigest()


def cents(amount: object) -> int | None:
    """Whole cents from an amount in currency units (`12`, `"12.50"`); None when absent or not a number."""
    if amount in (None, ""):
        return None
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0:
        return None
    return int((value * 100).to_integral_value())


# --- The token ----------------------------------------------------------------------------------


def token_for(marketplace: Marketplace) -> str:
    """The token, or a `MarketplaceError` (not transient: waiting will not set a variable) naming what to set.

    The prefix is checked here as well as by the model's validator, because rows written without
    `full_clean` (the shell, a data migration) skip validators: no name may make us send, say, the
    database's password to a remote server.
    """
    name = marketplace.credential_env
    if not name:
        raise MarketplaceError(
            f"{marketplace.slug}: no API token: name a {CREDENTIAL_ENV_PREFIX}… variable in the marketplace's "
            f"credential_env and set {CREDENTIAL_ENV_PREFIX}… in the environment."
        )
    if not name.startswith(CREDENTIAL_ENV_PREFIX):
        raise MarketplaceError(
            f"{marketplace.slug}: credential_env {name!r} does not start with {CREDENTIAL_ENV_PREFIX}; "
            f"set {CREDENTIAL_ENV_PREFIX}… and name it instead."
        )
    token = os.environ.get(name, "").strip()
    if not token:
        raise MarketplaceError(f"{marketplace.slug}: no API token: set {name} in the environment.")
    return token


# --- HTTP --------------------------------------------------------------------------------------

_client: httpx.Client | None = None


def http_client() -> httpx.Client:
    """One client per process for every marketplace: pooled connections, explicit timeouts."""
    global _client
    if _client is None:
        _client = httpx.Client(timeout=settings.MARKETPLACE_HTTP_TIMEOUT_SECONDS, follow_redirects=False)
    return _client


def response_checked(response: httpx.Response, what: str) -> httpx.Response:
    """The response, or a `MarketplaceError` saying whether trying again may help."""
    if response.is_success:
        return response
    transient = response.status_code == 429 or response.status_code >= 500
    raise MarketplaceError(
        f"{what}: HTTP {response.status_code} {response.text[:300]}",
        transient=transient,
        status_code=response.status_code,
    )


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError) or (isinstance(exc, MarketplaceError) and exc.transient)


# Reads only: a search or a listing asked twice does no harm.
read_retrying = retry(
    retry=retry_if_exception(_is_transient),
    stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=0.2, max=2),
    reraise=True,
)


# --- The breaker ---------------------------------------------------------------------------------


def breaker_check(marketplace: Marketplace, *, now: datetime | None = None) -> None:
    """Refuse to call a marketplace whose breaker is open (read fresh: another process may have opened it)."""
    now = now or timezone.now()
    open_until = Marketplace.objects.filter(pk=marketplace.pk).values_list("open_until", flat=True).first()
    if open_until and open_until > now:
        raise MarketplaceError(f"Paused until {open_until:%H:%M:%S} after failures in a row.", transient=True)


def breaker_record(marketplace: Marketplace, *, ok: bool, now: datetime | None = None) -> None:
    """Count a call's outcome: a success closes the breaker, the Nth transient failure in a row opens it."""
    rows = Marketplace.objects.filter(pk=marketplace.pk)
    if ok:
        rows.filter(failures__gt=0).update(failures=0, open_until=None)
        return
    rows.update(failures=F("failures") + 1)
    now = now or timezone.now()
    cooldown = timedelta(seconds=settings.MARKETPLACE_BREAKER_COOLDOWN_SECONDS)
    rows.filter(failures__gte=settings.MARKETPLACE_BREAKER_FAILURES).update(open_until=now + cooldown, failures=0)


def call_guarded(marketplace: Marketplace, call, *args, **kwargs):
    """Run one adapter call behind the marketplace's breaker."""
    breaker_check(marketplace)
    try:
        result = call(*args, **kwargs)
    except httpx.TransportError as exc:
        breaker_record(marketplace, ok=False)
        raise MarketplaceError(f"{type(exc).__name__}: {exc}", transient=True) from exc
    except MarketplaceError as exc:
        if exc.transient:
            breaker_record(marketplace, ok=False)
        raise
    breaker_record(marketplace, ok=True)
    return result
