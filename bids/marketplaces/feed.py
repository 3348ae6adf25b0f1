"""JSON, RSS and Atom feeds of postings, from a URL or a file in the repository.

A feed has no bid API: bids on it are drafts an operator sends by hand (or `simulated` in training
mode). `Marketplace.search["fields"]` maps our field names to dotted paths in a feed item; `items`
names the list in a JSON document (default: the document itself when it is a list, else `items`).
"""

import json
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import feedparser
from django.conf import settings
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
)

JSON_FIELDS = {
    "id": "id",
    "title": "title",
    "description": "description",
    "url": "url",
    "budget_min": "budget.min",
    "budget_max": "budget.max",
    "currency": "budget.currency",
    "skills": "skills",
    "posted_at": "posted_at",
}
# feedparser's names: Atom's <content>/<summary> and RSS's <description> both become `summary`,
# categories become `tags`; a namespaced element such as <job:budget> becomes `job_budget`.
XML_FIELDS = {
    "id": "id",
    "title": "title",
    "description": "summary",
    "url": "link",
    "budget_min": "budget_min",
    "budget_max": "budget_max",
    "currency": "currency",
    "skills": "tags.term",
    "posted_at": "published_parsed",
}


class FeedAdapter(Adapter):
    def search(self) -> list[FoundPosting]:
        content = self._read()
        if content.lstrip()[:1] in (b"{", b"["):
            return [self._posting(item, JSON_FIELDS) for item in self._json_items(content)]
        parsed = feedparser.parse(content)
        if not parsed.get("version"):  # feedparser names the format it recognised, if any
            raise MarketplaceError("This is not a JSON, RSS or Atom feed.")
        return [self._posting(dict(entry), XML_FIELDS) for entry in parsed.entries]

    @read_retrying
    def _read(self) -> bytes:
        source = self.marketplace.base_url
        if source.startswith(("http://", "https://")):
            return response_checked(http_client().get(source), f"{self.marketplace.slug} feed").content
        path = (settings.BASE_DIR / source).resolve()
        if not path.is_relative_to(Path(settings.BASE_DIR).resolve()):
            raise MarketplaceError("A feed file must be inside the project folder.")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise MarketplaceError(f"Cannot read the feed file: {exc}") from exc

    def _json_items(self, content: bytes) -> list[dict]:
        try:
            document = json.loads(content)
        except ValueError as exc:
            raise MarketplaceError(f"The feed is not valid JSON: {exc}") from exc
        items = (
            document if isinstance(document, list) else _dig(document, self.marketplace.search.get("items", "items"))
        )
        if not isinstance(items, list):
            raise MarketplaceError("The feed has no list of items.")
        return [item for item in items if isinstance(item, dict)]

    def _posting(self, item: dict, defaults: dict[str, str]) -> FoundPosting:
        paths = {**defaults, **self.marketplace.search.get("fields", {})}

        def value(name: str):
            return _dig(item, paths[name]) if paths.get(name) else None

        url = str(value("url") or "")
        low, high = cents(value("budget_min")), cents(value("budget_max"))
        return FoundPosting(
            external_id=external_id_for(source_id=value("id"), url=url),
            title=str(value("title") or "(untitled)")[:300],
            description=str(value("description") or ""),
            url=url[:1000],
            budget_min_cents=low if low is not None else high,
            budget_max_cents=high if high is not None else low,
            currency=str(value("currency") or "USD").upper()[:3],
            skills=_skills(value("skills")),
            posted_at=_when(value("posted_at")),
            raw=json.loads(json.dumps(item, default=str)),
        )


def _dig(item, path: str):
    """`budget.max` → item["budget"]["max"]; through a list, every element's value (`tags.term`)."""
    value = item
    for key in path.split("."):
        if isinstance(value, list):
            value = [element.get(key) for element in value if isinstance(element, dict)]
        elif isinstance(value, dict):
            value = value.get(key)
        else:
            return None
    return value


def _skills(value) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return ()
    return tuple(dict.fromkeys(str(skill).strip().lower() for skill in value if str(skill).strip()))


def _when(value) -> datetime | None:
    """ISO 8601 (JSON feeds, Atom), RFC 822 (RSS) or feedparser's parsed UTC time."""
    if isinstance(value, time.struct_time):
        return datetime(*value[:6], tzinfo=UTC)
    if not isinstance(value, str):
        return None
    parsed = parse_datetime(value.strip())
    if parsed is None:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
