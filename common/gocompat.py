"""Text as the Go original and Kubernetes handle it, in one place: Go's `%q` quoting, Go string
lengths (UTF-8 bytes), the DNS-1123 name rules of k8s.io/apimachinery, cutting a value shown in a
message, and zerolog's trace level.
"""

from __future__ import annotations

import re
from typing import Final

# zerolog's trace level: below DEBUG, so `trace` records vanish under `debug` as they do in zerolog.
TRACE: Final = 5

ELLIPSIS: Final = "…"


def cut(text: str, limit: int) -> str:
    """`text` if it has at most `limit` characters, else its first `limit - 1` and an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + ELLIPSIS


# A lone UTF-16 surrogate: Python's json keeps a `\ud800` escape as one, Go's holds U+FFFD instead.
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def go_text(text: str) -> str:
    """`text` with each lone surrogate as the U+FFFD Go's encoding/json would have decoded it to."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def go_utf8(text: str) -> bytes:
    """`text` as UTF-8, each lone surrogate (which UTF-8 cannot carry) as the U+FFFD Go's
    encoding/json would have decoded it to. A review may carry one anywhere, and a reply that
    echoes it must still be written."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return go_text(text).encode()


def go_len(text: str) -> int:
    """Length as Go's len(): UTF-8 bytes. A lone surrogate (JSON can carry `\\ud800`) counts as
    the three bytes of the U+FFFD Go would hold instead of failing the encoding."""
    return len(text.encode("utf-8", "surrogatepass"))


# --- Go %q ------------------------------------------------------------------------------------

_GO_ESCAPES: Final = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    '"': '\\"',
    "\\": "\\\\",
}


# Printable ASCII with nothing to escape quotes as itself: the common case, kept cheap.
_PLAIN_ASCII = re.compile(r"[ !#-\[\]-~]*")


def go_quote(s: str) -> str:
    """Quote `s` exactly as Go's `%q` (strconv.Quote) would, for any string JSON can carry."""
    if _PLAIN_ASCII.fullmatch(s):
        return f'"{s}"'
    out = ['"']
    for raw in s:
        # Python's json keeps a lone surrogate escape; Go's encoding/json has already turned it
        # into U+FFFD by the time the Go original quoted the value.
        ch = "\ufffd" if "\ud800" <= raw <= "\udfff" else raw
        code = ord(ch)
        escaped = _GO_ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        # str.isprintable and Go's strconv.IsPrint agree: L, M, N, P, S and the ASCII space.
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


# --- RFC 1123 / DNS 1123 (k8s.io/apimachinery/pkg/util/validation) --------------------------------

DNS1123_LABEL_MAX: Final = 63
DNS1123_SUBDOMAIN_MAX: Final = 253
# Kubernetes' own spelling of the patterns: messages quote the label one verbatim.
DNS1123_LABEL_FMT: Final = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT: Final = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
DNS1123_LABEL_RE: Final = re.compile(DNS1123_LABEL_FMT)
DNS1123_SUBDOMAIN_RE: Final = re.compile(DNS1123_SUBDOMAIN_FMT)


def is_dns1123_subdomain(value: str) -> bool:
    """IsDNS1123Subdomain: at most 253 characters of dot-separated lowercase labels."""
    return (
        go_len(value) <= DNS1123_SUBDOMAIN_MAX and DNS1123_SUBDOMAIN_RE.fullmatch(value) is not None
    )
