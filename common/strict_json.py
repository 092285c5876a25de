"""JSON as the API server reads it, and bounded before anything recursive touches it.

Python's json also accepts NaN and Infinity, JSON does not. Nesting depth is checked before
parsing: the C decoder, and every recursive walk of what it returns (pydantic, json.dumps),
recurse once per level, and past Python's recursion limit they raise RecursionError, which no
caller expects. Kubernetes accepts up to 10,000 levels; no object a cocoon webhook reads comes
near MAX_DEPTH, so deeper documents are refused as invalid.

The check is ours rather than a faster parser's option: orjson and jiter bound depth but refuse
lone surrogate escapes (`"\\ud800"`), which Go's encoding/json, and so the API server, accepts.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

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
    return json.loads(text, parse_constant=_reject_constant)
