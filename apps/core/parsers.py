"""Reading JSON request bodies. One place decides what an unreadable body is, so every JSON
endpoint (DRF views through the parser below, plain Django views through `json_loads`) answers
a malformed or hostile body with a 400 instead of a 500.

Deep nesting is the case the standard library does not report as a `ValueError`: `json.loads`
of `[[[[…]]]]` ~1,000 levels deep raises `RecursionError`, which would escape every
`except ValueError` and end as a 500."""

import json
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

TOO_DEEP = "the body nests arrays or objects too deeply"


class JsonTooDeepError(ValueError):
    """The body nests deeper than the parser can follow."""


def json_loads(raw: bytes | str) -> Any:
    """`json.loads` whose every failure is a `ValueError` (too-deep nesting included)."""
    try:
        return json.loads(raw)
    except RecursionError as exc:
        raise JsonTooDeepError(TOO_DEEP) from exc


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser (the project's only parser, REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"])
    with too-deep nesting reported as a parse error (400) like any other bad JSON."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(f"JSON parse error - {TOO_DEEP}.") from exc
