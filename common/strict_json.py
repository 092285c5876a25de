"""JSON as the API server reads it, and bounded before anything recursive touches it.

Python's json also accepts NaN and Infinity, JSON does not. Nesting depth is checked before
parsing: the C decoder, and every recursive walk of what it returns (pydantic, json.dumps),
recurse once per level, and past Python's recursion limit they raise RecursionError, which no
caller expects. Kubernetes accepts up to 10,000 levels; no object a cocoon webhook reads comes
near MAX_DEPTH, so deeper documents are refused as invalid.

The check is ours rather than a faster parser's option: orjson and jiter bound depth but refuse
lone surrogate escapes (`"\\ud800"`), which Go's encoding/json, and so the API server, accepts.

A lone surrogate escape (`"\\ud800"`, no partner) decodes to U+FFFD, as in Go's encoding/json
and so in the API server: Python's json would keep a surrogate, which no reply, log line or
ConfigMap write can encode as UTF-8.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from common.gocompat import go_text

MAX_DEPTH = 256

# A JSON string, escapes included (an unterminated one is left alone: the parser rejects it).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class TooDeep(ValueError):
    def __init__(self) -> None:
        super().__init__(f"JSON nested deeper than {MAX_DEPTH} levels")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def nesting_exceeds(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether any point of `text` sits inside more than `limit` arrays or objects.

    Linear and all in C: brackets inside strings are dropped, then the running depth's maximum
    is taken. A document with at most `limit` brackets in all cannot be deeper, which spares
    ordinary reviews everything but two counts.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _BRACKET.findall(_STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > limit


def loads(text: str) -> Any:
    """Parse `text`; ValueError (TooDeep for nesting) for anything the API server would refuse."""
    if nesting_exceeds(text):
        raise TooDeep
    document = json.loads(text, parse_constant=_reject_constant)
    # Text decoded from UTF-8 holds no surrogate: only an escape can make one (either case).
    if "\\ud" in text or "\\uD" in text:
        return _without_lone_surrogates(document)
    return document


def _without_lone_surrogates(value: Any) -> Any:
    # Recursion is bounded: the document is at most MAX_DEPTH deep. A key that becomes equal to
    # an earlier one replaces it, as a later duplicate key does in Go.
    if isinstance(value, str):
        return go_text(value)
    if isinstance(value, list):
        return [_without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {go_text(key): _without_lone_surrogates(item) for key, item in value.items()}
    return value
