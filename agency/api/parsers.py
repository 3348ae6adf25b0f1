"""Request body parsers."""

import codecs
import io
import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from agency.json_documents import JsonDocumentRejected, json_document_check


class JsonParser(parsers.JSONParser):
    """DRF's JSON parser, with the nesting depth checked before the body is built (`JSON_MAX_DEPTH`,
    the limit of uploaded JSON files too). DRF's own parser lets `RecursionError` escape: a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        limit = settings.API_BODY_MAX_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:  # a body longer than it said it was (chunked, or a lying Content-Length)
            raise RequestDataTooBig(f"The request body is over {limit} bytes.")  # 413 (JsonErrorMiddleware)
        try:
            text = raw.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            raise ParseError(f"JSON parse error - the body is not {encoding} text.") from None
        utf8 = raw if codecs.lookup(encoding).name == "utf-8" else text.encode("utf-8", "surrogatepass")
        try:
            json_document_check(io.BytesIO(utf8), max_depth=settings.JSON_MAX_DEPTH)
            return json.loads(text)
        except (JsonDocumentRejected, ValueError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
