"""Kubernetes resource quantities: is this text one the API machinery would accept?

Only the syntax matters here; nothing in the webhook computes with sizes. The grammar is
resource.Quantity's, the one the CRD schema also enforces on `storage` and `resources`:

    <quantity> ::= <sign>? <number> <suffix>
    <number>   ::= <digits> | <digits> "." <digits>? | "." <digits>
    <suffix>   ::= "" | binary Ki Mi Gi Ti Pi Ei | decimal n u m k M G T P E
                 | ("e" | "E") <sign>? <digits>
"""

from __future__ import annotations

import re

# An exponent must fit in an int64, as strconv.ParseInt demands; no real size comes close.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# Explicit ASCII classes: Python's \d would also match Arabic-Indic and other digits.
_QUANTITY = re.compile(
    r"""
    [+-]?
    (?: [0-9]+ (?: \. [0-9]* )? | \. [0-9]+ )
    (?P<suffix>
        (?: Ki | Mi | Gi | Ti | Pi | Ei )
      | [numkMGTPE]?
      | [eE] (?P<exponent> [+-]? [0-9]+ )
    )
    """,
    re.VERBOSE,
)


def is_quantity(text: str) -> bool:
    """True when `text` is a Kubernetes quantity (`100Gi`, `0.5`, `1e3`); no surrounding spaces."""
    match = _QUANTITY.fullmatch(text)
    if match is None:
        return False
    exponent = match.group("exponent")
    if exponent is None:
        return True
    # Checked before int(): Python refuses to convert strings of more than 4300 digits.
    if len(exponent.lstrip("+-").lstrip("0")) > 19:
        return False
    return _INT64_MIN <= int(exponent) <= _INT64_MAX
