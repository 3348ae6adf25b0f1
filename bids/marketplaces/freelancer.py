"""Freelancer.com's REST API v0.1: active projects, and the agency's own bids (place, list, retract).

Every call carries the token in the `freelancer-oauth-v1` header. The API answers
`{"status": "success", "result": …}`, or `{"status": "error", "message": …, "error_code": …}` with
a 4xx or 5xx status; `FreelancerError.error_code` keeps that code, so that a caller can tell
"you already bid on this project" (`DUPLICATE_BID`: an earlier placement did arrive) from any other
refusal.
"""

from datetime import UTC, datetime

import httpx

from bids.marketplaces.base import (
    Adapter,
    FoundPosting,
    MarketplaceError,
    RemoteBid,
    cents,
    external_id_for,
    http_client,
    read_retrying,
    token_for,
)
from bids.models import Marketplace

SITE = "https://www.freelancer.com"
PROJECTS_ACTIVE = "/api/projects/0.1/projects/active/"
SELF = "/api/users/0.1/self/"
BIDS = "/api/projects/0.1/bids/"

DUPLICATE_BID = "ProjectExceptionCodes.DUPLICATE_BID"
BIDS_PAGE_SIZE = 100
# Award statuses that end a bid without work; "pending" is an award offered and not yet accepted.
AWARD_LOST = ("rejected", "revoked", "canceled")


class FreelancerError(MarketplaceError):
    """A `MarketplaceError` with Freelancer's `error_code` (empty when the answer had none)."""

    def __init__(self, message: str, *, transient: bool = False, status_code: int | None = None, error_code: str = ""):
        super().__init__(message, transient=transient, status_code=status_code)
        self.error_code = error_code

    @property
    def duplicate_bid(self) -> bool:
        return self.error_code == DUPLICATE_BID


class FreelancerAdapter(Adapter):
    def __init__(self, marketplace: Marketplace):
        super().__init__(marketplace)
        self._bidder_id: int | None = None

    def search(self) -> list[FoundPosting]:
        headers = self._headers()
        options = self.marketplace.search
        limit = max(1, int(options.get("limit", 50)))
        most = int(options.get("max_results", 200))
        found: list[FoundPosting] = []
        offset = 0
        while len(found) < most:
            params = {
                "query": options.get("query", ""),
                "limit": limit,
                "offset": offset,
                "full_description": "true",
                "job_details": "true",
                "compact": "true",
            }
            page = _dicts(self._get(PROJECTS_ACTIVE, headers, params).get("projects"))
            found += [self._posting(project) for project in page]
            offset += len(page)
            if len(page) < limit:
                break
        return found[:most]

    def bid_place(self, *, posting_external_id: str, amount_cents: int, proposal: str, idempotency_key: str) -> str:
        headers = self._headers()
        body = {
            "project_id": _numeric(posting_external_id, "project id"),
            "bidder_id": self._bidder(headers),
            "amount": amount_cents / 100,
            "period": int(self.marketplace.search.get("bid_period_days", 3)),
            "milestone_percentage": 100,
            "description": proposal,
        }
        # Sent once: a request that may have arrived is settled by reconciliation (bids_mine), never
        # by sending it again. Freelancer documents no idempotency key; the header costs nothing and
        # lets its logs (and our fake) match a placement to our bid.
        result = self._call(
            "POST", BIDS, headers={**headers, "Idempotency-Key": str(idempotency_key)}, json=body, what="place a bid"
        )
        if result.get("id") in (None, ""):
            # Accepted, yet no id to record: the bid may well exist, so this is not a refusal.
            raise FreelancerError(f"{self.marketplace.slug}: a bid was accepted without an id.", transient=True)
        return str(result["id"])

    def bids_mine(self) -> list[RemoteBid]:
        headers = self._headers()
        params = {"bidders[]": self._bidder(headers), "limit": BIDS_PAGE_SIZE, "offset": 0}
        bids: dict[str, RemoteBid] = {}
        while True:
            page = _dicts(self._get(BIDS, headers, params).get("bids"))
            fresh = {bid.remote_id: bid for bid in map(_remote_bid, page) if bid.remote_id not in bids}
            bids.update(fresh)
            # A page with nothing new ends the walk too: a server repeating itself cannot loop us forever.
            if len(page) < BIDS_PAGE_SIZE or not fresh:
                return list(bids.values())
            params["offset"] += len(page)

    def bid_retract(self, *, remote_id: str) -> None:
        """Retract a bid; retracting one already retracted is not an error."""
        path = f"{BIDS}{_numeric(remote_id, 'bid id')}/"
        self._call("PUT", path, headers=self._headers(), params={"action": "retract"}, what="retract a bid")

    # --- HTTP ------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"freelancer-oauth-v1": token_for(self.marketplace), "Accept": "application/json"}

    def _bidder(self, headers: dict[str, str]) -> int:
        """Our user id on Freelancer, asked once per adapter: bids are placed and listed by it."""
        if self._bidder_id is None:
            user_id = self._get(SELF, headers, {}).get("id")
            self._bidder_id = _numeric(str(user_id), "user id")
        return self._bidder_id

    @read_retrying
    def _get(self, path: str, headers: dict[str, str], params: dict) -> dict:
        return self._call("GET", path, headers=headers, params=params, what=f"GET {path}")

    def _call(self, method: str, path: str, *, headers: dict[str, str], what: str, **request) -> dict:
        url = self.marketplace.base_url.rstrip("/") + path
        what = f"{self.marketplace.slug} {what}"
        try:
            response = http_client().request(method, url, headers=headers, **request)
        except httpx.TransportError as exc:  # the request may or may not have arrived
            raise FreelancerError(f"{what}: {type(exc).__name__}: {exc}", transient=True) from exc
        return _result(response, what)

    def _posting(self, project: dict) -> FoundPosting:
        seo_url = str(project.get("seo_url") or "").strip("/")
        url = f"{SITE}/projects/{seo_url}" if seo_url else ""
        budget = project.get("budget") or {}
        low, high = cents(budget.get("minimum")), cents(budget.get("maximum"))
        return FoundPosting(
            external_id=external_id_for(source_id=project.get("id"), url=url),
            title=str(project.get("title") or "(untitled)")[:300],
            description=str(project.get("description") or project.get("preview_description") or ""),
            url=url[:1000],
            budget_min_cents=low if low is not None else high,
            budget_max_cents=high if high is not None else low,
            currency=str((project.get("currency") or {}).get("code") or "USD").upper()[:3],
            skills=_skills(project.get("jobs")),
            posted_at=_when(project.get("time_submitted")),
            raw=project,
        )


def _result(response: httpx.Response, what: str) -> dict:
    """The answer's `result`, or a `FreelancerError` saying whether trying again may help."""
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    if response.is_success and body.get("status") == "success":
        result = body.get("result")
        return result if isinstance(result, dict) else {}
    message = str(body.get("message") or response.text[:300])
    error_code = str(body.get("error_code") or "")
    status = response.status_code
    # A 2xx that is not a success envelope (a proxy's page, a cut body) may still have done its
    # work, a bid placed included: only reconciliation can tell, so it is never a refusal.
    transient = response.is_success or status == 429 or status >= 500
    raise FreelancerError(
        " ".join(part for part in (f"{what}: HTTP {status}", error_code, message) if part),
        transient=transient,
        status_code=status,
        error_code=error_code,
    )


def _remote_bid(item: dict) -> RemoteBid:
    award = item.get("award_status")
    if item.get("retracted"):
        status = "retracted"
    elif award == "awarded":
        status = "awarded"
    elif award in AWARD_LOST:
        status = "lost"
    else:
        status = "active"
    return RemoteBid(
        remote_id=str(item.get("id")),
        posting_external_id=str(item.get("project_id")),
        amount_cents=cents(item.get("amount")) or 0,
        status=status,
    )


def _skills(jobs) -> tuple[str, ...]:
    names = (str(job.get("name") or "").strip().lower() for job in _dicts(jobs))
    return tuple(dict.fromkeys(name for name in names if name))


def _numeric(value: str, what: str) -> int:
    """Freelancer's ids are integers; anything else would be refused remotely, so refuse it here."""
    if not str(value).isdigit():
        raise MarketplaceError(f"Freelancer needs a numeric {what}, not {value!r}.")
    return int(value)


def _dicts(value) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _when(value) -> datetime | None:
    """A time from Unix seconds (Freelancer's `time_submitted`), in UTC."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value, tz=UTC)
