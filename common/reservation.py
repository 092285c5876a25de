"""The value of one affinity ConfigMap entry (SPEC 5.8) and its JSON codec.

The Go original, vk-cocoon and the operator read these values, so `encode` writes what Go's
encoding/json would: compact, fields in struct order, `<`, `>`, `&`, U+2028 and U+2029 escaped as
`\\u003c`-style sequences, times in time.RFC3339Nano form. A Go-written value therefore decodes and
re-encodes byte for byte, which keeps a rewrite of one field from churning the others.

Time precision: Go writes nanoseconds, Python's datetime holds microseconds. The datetimes here are
the values every rule compares (aware, UTC). `decode` also keeps the original time text; `encode`
writes that text back when it is canonical (UTC `Z`, trimmed fraction) and still denotes the
datetime, so nanosecond digits survive unchanged values and any changed time is written from the
datetime. The kept text takes no part in equality.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from common import strict_json
from common.decode_errors import Unreadable
from common.gocompat import go_len
from common.naming import bare_key, deployment_key

# Kubernetes caps a ConfigMap's data at 1 MiB; counted as key plus value UTF-8 bytes.
CONFIGMAP_DATA_LIMIT = 1 << 20

# What Go's zero time.Time encodes as; a value without `updatedAt` is an ancient claim.
YEAR_ONE = datetime(1, 1, 1, tzinfo=UTC)

_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_CANONICAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d*[1-9])?Z", re.ASCII)
_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)
_MAX_INT64 = (1 << 63) - 1


class MalformedEntry(Unreadable):
    """A value that is not a reservation (SPEC 8.2's malformed rule); `reason` is one line."""


@dataclass(frozen=True)
class Reservation:
    pool: str
    namespace: str
    deployment: str  # "" for bare pods
    slot: int  # 0 for bare pods
    vm_name: str
    pod: str
    node: str  # "" when no node was available
    updated_at: datetime = YEAR_ONE  # the claim
    missing_since: datetime | None = None  # set by the reaper
    updated_at_text: str | None = field(default=None, compare=False, repr=False, kw_only=True)
    missing_since_text: str | None = field(default=None, compare=False, repr=False, kw_only=True)

    @property
    def bare(self) -> bool:
        return self.deployment == ""

    def canonical_key(self) -> str:
        """Where this value belongs; it may sit elsewhere (a Go-original `<ns>._pod.0` row)."""
        if self.bare:
            return bare_key(self.namespace, self.pod)
        return deployment_key(self.namespace, self.deployment, self.slot)

    def in_flight(self, now: datetime, window: timedelta) -> bool:
        """Claimed less than `window` ago: the pod may be admitted but not yet visible in a LIST.

        A claim in the future (clock skew between replicas) counts as in flight too.
        """
        return now - self.updated_at < window


def encode(reservation: Reservation) -> str:
    """The compact JSON value, byte-compatible with the Go original's encoder."""
    doc: dict[str, Any] = {
        "pool": reservation.pool,
        "namespace": reservation.namespace,
        "deployment": reservation.deployment,
        "slot": reservation.slot,
        "vmName": reservation.vm_name,
        "pod": reservation.pod,
        "node": reservation.node,
        "updatedAt": _time_text(reservation.updated_at, reservation.updated_at_text),
    }
    if reservation.missing_since is not None:
        doc["missingSince"] = _time_text(reservation.missing_since, reservation.missing_since_text)
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).translate(_GO_ESCAPES)


# Every admission re-reads its pool's whole ConfigMap, whose values rarely change between
# reads; decoding is pure and Reservation immutable, so each distinct value is parsed once.
@functools.lru_cache(maxsize=1 << 15)
def decode(text: str) -> Reservation:
    """Read a value written by us or the Go original; raise MalformedEntry otherwise.

    Unknown fields are ignored and `null` counts as absent, as in Go's encoding/json.
    """
    try:
        doc = strict_json.loads(text)
    except ValueError:
        raise MalformedEntry("not a JSON object") from None
    if not isinstance(doc, dict):
        raise MalformedEntry("not a JSON object")
    for name in ("namespace", "pod"):
        value = doc.get(name)
        if not isinstance(value, str) or not value:
            raise MalformedEntry(f"{name} is empty or not a string")
    slot = doc.get("slot")
    if slot is None:
        slot = 0
    # bool is an int in Python but not in JSON; Go's int is 64 bits.
    if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot <= _MAX_INT64:
        raise MalformedEntry("slot is not a non-negative integer")
    strings = {
        name: _optional_string(doc, name)
        for name in ("pool", "deployment", "vmName", "node", "updatedAt", "missingSince")
    }
    updated_text = strings["updatedAt"]
    missing_text = strings["missingSince"]
    return Reservation(
        pool=strings["pool"] or "",
        namespace=doc["namespace"],
        deployment=strings["deployment"] or "",
        slot=slot,
        vm_name=strings["vmName"] or "",
        pod=doc["pod"],
        node=strings["node"] or "",
        updated_at=YEAR_ONE if updated_text is None else parse_time(updated_text, "updatedAt"),
        missing_since=None if missing_text is None else parse_time(missing_text, "missingSince"),
        updated_at_text=updated_text,
        missing_since_text=missing_text,
    )


# Every admission plans against its ConfigMap's entries, nearly all of them unchanged since the
# last: a value seen before is not parsed again (Reservation is immutable, so sharing is safe).
# Sized for a few pools of several thousand entries; malformed values are not remembered.
_decode_known = functools.lru_cache(maxsize=1 << 15)(decode)


def read_entries(data: Mapping[str, str]) -> dict[str, Reservation | MalformedEntry]:
    """A ConfigMap's data, each value decoded or the reason it is malformed, in the data's order."""
    entries: dict[str, Reservation | MalformedEntry] = {}
    for key, value in data.items():
        try:
            entries[key] = _decode_known(value)
        except MalformedEntry as err:
            entries[key] = err
    return entries


def decode_entries(
    data: Mapping[str, str],
) -> tuple[dict[str, Reservation], dict[str, MalformedEntry]]:
    """A ConfigMap's data split into readable reservations and malformed values, both by key."""
    good: dict[str, Reservation] = {}
    bad: dict[str, MalformedEntry] = {}
    for key, entry in read_entries(data).items():
        if isinstance(entry, MalformedEntry):
            bad[key] = entry
        else:
            good[key] = entry
    return good, bad


def data_bytes(data: Mapping[str, str]) -> int:
    """What counts against CONFIGMAP_DATA_LIMIT: key plus value UTF-8 bytes of every entry."""
    return sum(go_len(key) + go_len(value) for key, value in data.items())


def _optional_string(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is not None and not isinstance(value, str):
        raise MalformedEntry(f"{name} is not a string")
    return value


def parse_time(text: str, what: str = "time") -> datetime:
    """RFC 3339 with 0–9 fractional digits and any offset, as an aware UTC datetime.

    Digits past microseconds are dropped (see the module docstring for how they survive).
    """
    match = _TIME.fullmatch(text)
    if match is None:
        raise MalformedEntry(f"{what}: unparseable time {json.dumps(text)[:64]}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micros = int((fraction or "").ljust(9, "0")[:6])
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, UTC
        )
        if offset != "Z":
            sign = 1 if offset[0] == "+" else -1
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError(offset)
            moment -= sign * timedelta(hours=hours, minutes=minutes)
    except (ValueError, OverflowError):
        raise MalformedEntry(f"{what}: unparseable time {json.dumps(text)[:64]}") from None
    return moment


def format_time(moment: datetime) -> str:
    """Go's time.RFC3339Nano in UTC: `Z`, fraction without trailing zeros, none when zero."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware UTC time")
    moment = moment.astimezone(UTC)
    # Formatted by hand: strftime("%Y") does not zero-pad year 1 on every platform.
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _time_text(moment: datetime, kept: str | None) -> str:
    if kept is not None and _CANONICAL_TIME.fullmatch(kept):
        try:
            if parse_time(kept) == moment:
                return kept
        except MalformedEntry:
            pass
    return format_time(moment)
