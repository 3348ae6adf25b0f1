"""Secret parts of URLs kept out of every log line and span.

Some of our URLs carry a secret in their path (a client's delivery link:
`/deliver/<task>/<token>/`). The project lists those path prefixes in
`SECRET_PATH_PREFIXES`; whatever follows a prefix is masked wherever it shows
up: the request line, a `path` field, an error message, a traceback, or a
span attribute.
"""

import functools
import re
from collections.abc import Iterable

from django.conf import settings

MASK = "…"


class Redactor:
    """Masks the rest of every path that starts with one of `prefixes`, in any text."""

    def __init__(self, prefixes: Iterable[str]):
        self.prefixes = tuple(prefixes)
        alternatives = "|".join(re.escape(prefix) for prefix in self.prefixes)
        # Up to the end of the URL: whitespace, a quote, or markup ends it.
        self._pattern = re.compile(f"({alternatives})[^\\s\"'<>]+") if self.prefixes else None

    def text(self, value: str) -> str:
        if self._pattern is None or not any(prefix in value for prefix in self.prefixes):
            return value  # the common case, decided without a regex
        return self._pattern.sub(lambda m: m.group(1) + MASK, value)

    def __call__(self, _logger, _method, event_dict: dict) -> dict:
        """As a structlog processor: every string field of the line, rendered exception included."""
        for key, value in event_dict.items():
            if isinstance(value, str):
                event_dict[key] = self.text(value)
        return event_dict


@functools.cache
def default_redactor() -> Redactor:
    """The redactor of this deployment's secret paths (`SECRET_PATH_PREFIXES`)."""
    return Redactor(settings.SECRET_PATH_PREFIXES)
