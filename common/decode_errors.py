"""Input we cannot read, said one way everywhere.

`Unreadable` is the one exception shape (a `reason`, one line for a reply or a log). `first_problem`
words pydantic's first complaint as `<json path>: want <type>, got <type or value>`, the form
CocoonSet users already see in denials; the envelope and the pod view use it too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError

from common.gocompat import cut, go_quote


class Unreadable(ValueError):
    """Input we cannot read; `reason` is one line for a reply or a log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# pydantic error type → what the field wants, in JSON terms.
WANTS: Final[Mapping[str, str]] = {
    "model_type": "object",
    "model_attributes_type": "object",
    "dict_type": "object",
    "list_type": "array",
    "string_type": "string",
    "bool_type": "bool",
    "string_too_short": "non-empty string",
}
MAX_SHOWN: Final = 40
_PLAIN_KEY: Final = re.compile("[A-Za-z_][A-Za-z0-9_-]*")


def shown(value: str) -> str:
    """A quoted value for a reason, cut so one huge string cannot bloat a reply."""
    return go_quote(cut(value, MAX_SHOWN))


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int) and value.bit_length() > 64:
        # Too long to be worth showing, and past 4300 digits Python refuses to format it.
        return "number"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def json_path(root: str, loc: tuple[int | str, ...]) -> str:
    """`root` (may be empty) followed by `loc` as JSON path steps."""
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part) and len(part) <= MAX_SHOWN:
            path += f".{part}" if path else part
        else:  # keys such as nvidia.com/gpu, where a dot would mislead
            path += f"[{shown(part)}]"
    return path


def _about_type(kind: str) -> bool:
    return kind.endswith("_type") or kind.startswith("int_")


def first_problem(error: ValidationError, root: str, wants: Mapping[str, str] = WANTS) -> str:
    """pydantic's first complaint about the document under `root`, as one line."""
    first = error.errors(include_url=False)[0]
    kind = first["type"]
    path = json_path(root, first["loc"])
    if kind == "missing":
        return f"{path}: required"
    value = first["input"]
    got = json_type(value)
    if isinstance(value, str) and not _about_type(kind):
        # A string of the right type but the wrong form (a pattern, a length): show it.
        got = shown(value)
    return f"{path}: want {wants.get(kind, kind)}, got {got}"
