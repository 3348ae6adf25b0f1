"""Upwork's GraphQL API, for searching job postings only.

Upwork offers no API to submit proposals, so bids on it are drafts an operator sends by hand: the
base class's `bid_place`, `bids_mine` and `bid_retract` raise `BidsByHand`. A GraphQL answer can be
HTTP 200 and still carry `errors`; that is a `MarketplaceError` like any other refusal.
"""

from datetime import UTC, datetime

import httpx
from django.utils.dateparse import parse_datetime

from bids.marketplaces.base import (
    Adapter,
    FoundPosting,
    MarketplaceError,
    cents,
    external_id_for,
    http_client,
    read_retrying,
    response_checked,
    token_for,
)

SITE = "https://www.upwork.com"
SEARCH = """
query postingsSearch($filter: MarketplaceJobPostingsSearchFilter) {
  marketplaceJobPostingsSearch(
    marketPlaceJobFilter: $filter
    searchType: USER_JOBS_SEARCH
    sortAttributes: [{field: RECENCY}]
  ) {
    edges {
      node {
        id
        title
        description
        ciphertext
        amount { rawValue currency }
        hourlyBudgetMin { rawValue }
        hourlyBudgetMax { rawValue }
        skills { name }
        createdDateTime
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""


class UpworkAdapter(Adapter):
    def search(self) -> list[FoundPosting]:
        headers = {"Authorization": f"Bearer {token_for(self.marketplace)}"}
        options = self.marketplace.search
        first = max(1, int(options.get("limit", 50)))
        most = int(options.get("max_results", 200))
        found: list[FoundPosting] = []
        after: str | None = None
        while len(found) < most:
            pagination = {"first": first} if after is None else {"after": after, "first": first}
            variables = {"filter": {"searchExpression_eq": options.get("query", ""), "pagination_eq": pagination}}
            page = self._post(headers, variables)
            nodes = [edge.get("node") for edge in _dicts(page.get("edges"))]
            found += [self._posting(node) for node in nodes if isinstance(node, dict)]
            info = page.get("pageInfo") or {}
            after = info.get("endCursor")
            if not info.get("hasNextPage") or not after:
                break
        return found[:most]

    @read_retrying
    def _post(self, headers: dict[str, str], variables: dict) -> dict:
        """One page of the search: `marketplaceJobPostingsSearch` of the answer's `data`."""
        what = f"{self.marketplace.slug} search"
        url = self.marketplace.base_url.rstrip("/") + "/graphql"
        try:
            response = http_client().post(url, headers=headers, json={"query": SEARCH, "variables": variables})
        except httpx.TransportError as exc:
            raise MarketplaceError(f"{what}: {type(exc).__name__}: {exc}", transient=True) from exc
        try:
            body = response_checked(response, what).json()
        except ValueError as exc:
            raise MarketplaceError(f"{what}: the answer is not JSON.", transient=True) from exc
        if not isinstance(body, dict):
            raise MarketplaceError(f"{what}: the answer is not a GraphQL response.", transient=True)
        if body.get("errors"):
            messages = "; ".join(str(error.get("message")) for error in _dicts(body["errors"])) or str(body["errors"])
            raise MarketplaceError(f"{what}: {messages[:500]}", status_code=response.status_code)
        page = (body.get("data") or {}).get("marketplaceJobPostingsSearch")
        if not isinstance(page, dict):
            raise MarketplaceError(f"{what}: the answer has no marketplaceJobPostingsSearch.")
        return page

    def _posting(self, node: dict) -> FoundPosting:
        # Upwork's ciphertext usually starts with the "~" its job URLs carry; never write it twice.
        ciphertext = str(node.get("ciphertext") or "").lstrip("~")
        url = f"{SITE}/jobs/~{ciphertext}" if ciphertext else ""
        amount = node.get("amount") or {}
        fixed = cents(amount.get("rawValue"))
        if fixed:
            low = high = fixed
        else:  # an hourly job: its rate range, per hour
            low = cents((node.get("hourlyBudgetMin") or {}).get("rawValue"))
            high = cents((node.get("hourlyBudgetMax") or {}).get("rawValue"))
        return FoundPosting(
            external_id=external_id_for(source_id=node.get("id"), url=url),
            title=str(node.get("title") or "(untitled)")[:300],
            description=str(node.get("description") or ""),
            url=url[:1000],
            budget_min_cents=low if low is not None else high,
            budget_max_cents=high if high is not None else low,
            currency=str(amount.get("currency") or "USD").upper()[:3],
            skills=_skills(node.get("skills")),
            posted_at=_when(node.get("createdDateTime")),
            raw=node,
        )


def _dicts(value) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _skills(skills) -> tuple[str, ...]:
    names = (str(skill.get("name") or "").strip().lower() for skill in _dicts(skills))
    return tuple(dict.fromkeys(name for name in names if name))


def _when(value) -> datetime | None:
    """Upwork's DateTime: ISO 8601, or milliseconds since the epoch as some of its fields send it."""
    text = str(value or "").strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    try:
        parsed = parse_datetime(text) if text else None
    except ValueError:  # well formed, yet no such date
        return None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
