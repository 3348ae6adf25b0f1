"""JSON from clients, checked before anything builds it: one document, nested at most `JSON_MAX_DEPTH` deep.

Python's `json` builds the whole document in memory (a 48 MiB upload took 1.3 GB) and
raises `RecursionError`, not `ValueError`, past about a thousand levels. The check
streams through the bytes instead (ijson's C backend, as fast as `json.loads`), so
its memory is bounded by its read buffer and the longest single string or number.
"""

from typing import IO

import ijson

_OPEN = frozenset({"start_map", "start_array"})
_CLOSE = frozenset({"end_map", "end_array"})
READ_SIZE = 64 * 1024


class JsonDocumentRejected(ValueError):
    """Not one JSON document, or nested too deep; the message says which, for the client."""


def json_document_check(stream: IO[bytes], *, max_depth: int) -> None:
    """Read UTF-8 JSON from `stream` to its end; raise `JsonDocumentRejected` unless it is acceptable."""
    depth = 0
    try:
        for event, _ in ijson.basic_parse(stream, buf_size=READ_SIZE):
            if event in _OPEN:
                depth += 1
                if depth > max_depth:
                    break
            elif event in _CLOSE:
                depth -= 1
    # ValueError: a number with more digits than Python converts (sys.get_int_max_str_digits).
    except (ijson.JSONError, ValueError):
        raise JsonDocumentRejected("The input is not valid JSON.") from None
    if depth > max_depth:
        raise JsonDocumentRejected(f"The JSON is nested deeper than {max_depth} levels.")
