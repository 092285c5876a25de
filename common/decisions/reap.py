"""reap: which affinity entries to mark, clear or release (SPEC 8.2 step 3). Pure: no I/O, no clock.

`judge` reads one ConfigMap's data and its malformed-since annotation against per-namespace pod
snapshots and returns the changes as values; the sweep (common.reaper) writes them in one
resourceVersion-guarded PUT and, on a conflict, calls `judge` again on the fresh data with the same
`now` and snapshots. That second call is what makes a release a compare-and-delete: an entry
re-claimed by mutate in between carries a claim newer than `now`, which counts as in flight.

Grace runs from when the reaper first saw the pod missing (`missingSince`), not from the claim:
an entry whose pod ran for a month is not released the moment that pod goes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from common import strict_json
from common.naming import MALFORMED_SINCE_ANNOTATION
from common.pod import PodSummary
from common.reservation import (
    CONFIGMAP_DATA_LIMIT,
    MalformedEntry,
    Reservation,
    encode,
    format_time,
    parse_time,
)


class Outcome(StrEnum):
    IN_FLIGHT = "in_flight"  # claimed inside the window: the pod may not be listed yet
    PRESENT = "present"
    CLEARED = "cleared"  # present again: `missingSince` removed
    MARKED = "marked"  # missing for the first time: `missingSince = now`
    WAITING = "waiting"  # missing and marked, grace not over
    RELEASED = "released"
    # Missing at its first judgement, soon after the claim: the pod never appeared (a forged
    # or refused review). Released at once; grace only matters for pods that existed.
    UNCONFIRMED_RELEASED = "unconfirmed_released"
    UNKNOWN = "unknown"  # its namespace could not be listed: untouched
    MALFORMED = "malformed"  # malformed, grace not over (first seen now or earlier)
    MALFORMED_RELEASED = "malformed_released"


# A pool this full releases never-confirmed claims at once (`unconfirmed_horizon`).
PRESSURE_BYTES = CONFIGMAP_DATA_LIMIT * 4 // 5

# The outcomes that remove the entry stored under their key.
_REMOVES = frozenset({Outcome.RELEASED, Outcome.UNCONFIRMED_RELEASED, Outcome.MALFORMED_RELEASED})


@dataclass(frozen=True)
class Presence:
    """One namespace's pods in any phase, as far as "is this entry's pod still there" needs."""

    names: frozenset[str] = frozenset()
    vm_names: frozenset[str] = frozenset()

    @classmethod
    def of(cls, pods: Iterable[PodSummary]) -> Presence:
        listed = list(pods)
        return cls(
            names=frozenset(p.name for p in listed),
            vm_names=frozenset(p.vm_name for p in listed if p.vm_name),
        )

    def holds(self, entry: Reservation) -> bool:
        """The recorded pod exists, or some pod carries the VM name.

        The second half protects pods the Go original admitted: their entries name identities
        like `<unnamed>` that never match a real pod, but the VM name annotation does.
        """
        return entry.pod in self.names or (entry.vm_name != "" and entry.vm_name in self.vm_names)


@dataclass(frozen=True)
class Changes:
    """One ConfigMap's judgement: an outcome per key and the writes that follow from it."""

    outcomes: Mapping[str, Outcome]
    updates: Mapping[str, str]  # key → rewritten value (marked or cleared)
    removals: frozenset[str]
    # The annotation's new text, None to drop it; `annotation_changed` says whether to write it.
    annotation: str | None
    annotation_changed: bool
    reasons: Mapping[str, str]  # key → why its value is malformed, for the warn log

    @property
    def changed(self) -> bool:
        return bool(self.updates or self.removals or self.annotation_changed)

    def count(self, *outcomes: Outcome) -> int:
        tally = Counter(self.outcomes.values())
        return sum(tally[o] for o in outcomes)

    def apply(
        self, data: Mapping[str, str], annotations: Mapping[str, str]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """New data and annotations for the ConfigMap these changes were judged from."""
        new_data = {k: self.updates.get(k, v) for k, v in data.items() if k not in self.removals}
        new_annotations = dict(annotations)
        if self.annotation is None:
            new_annotations.pop(MALFORMED_SINCE_ANNOTATION, None)
        else:
            new_annotations[MALFORMED_SINCE_ANNOTATION] = self.annotation
        return new_data, new_annotations


Entries = Mapping[str, Reservation | MalformedEntry]


def needed_namespaces(entries: Entries, now: datetime, window: timedelta) -> set[str]:
    """Namespaces whose pod snapshot `judge` will consult: those of entries outside the window.

    In-flight and malformed entries are judged without one, so their namespaces are not listed.
    """
    return {
        entry.namespace
        for entry in entries.values()
        if isinstance(entry, Reservation) and not entry.in_flight(now, window)
    }


def judge(
    entries: Entries,
    malformed_since: str | None,
    pods: Mapping[str, Presence | None],
    now: datetime,
    grace: timedelta,
    window: timedelta,
    unconfirmed: timedelta | None = None,
) -> Changes:
    """SPEC 8.2 step 3 for every entry of one ConfigMap (`read_entries` of its data).

    `unconfirmed` (from `unconfirmed_horizon`; None outside pressure): an entry found missing
    for the first time while its claim is younger than this was never seen by a sweep, so its
    pod most likely never existed; it is released at once instead of marked.

    `malformed_since` is the ConfigMap's annotation text (or None); `pods` maps a namespace to its
    snapshot, None (or no key) when its LIST failed. `now` is the sweep's start, earlier than
    every snapshot, so a claim written after any LIST the decision relies on is in flight.
    """
    first_seen = parse_malformed_since(malformed_since)
    outcomes: dict[str, Outcome] = {}
    updates: dict[str, str] = {}
    reasons: dict[str, str] = {}
    still_malformed: dict[str, datetime] = {}

    for key, entry in entries.items():
        if isinstance(entry, MalformedEntry):
            reasons[key] = entry.reason
            since = first_seen.get(key, now)
            if now - since >= grace:
                outcomes[key] = Outcome.MALFORMED_RELEASED
            else:
                outcomes[key] = Outcome.MALFORMED
                still_malformed[key] = since
            continue
        outcome = _judge_entry(entry, pods, now, grace, window, unconfirmed)
        outcomes[key] = outcome
        if outcome is Outcome.MARKED:
            updates[key] = encode(replace(entry, missing_since=now, missing_since_text=None))
        elif outcome is Outcome.CLEARED:
            updates[key] = encode(replace(entry, missing_since=None, missing_since_text=None))

    annotation = format_malformed_since(still_malformed)
    return Changes(
        outcomes=outcomes,
        updates=updates,
        removals=frozenset(k for k, o in outcomes.items() if o in _REMOVES),
        annotation=annotation,
        annotation_changed=annotation != malformed_since,
        reasons=reasons,
    )


def _judge_entry(
    entry: Reservation,
    pods: Mapping[str, Presence | None],
    now: datetime,
    grace: timedelta,
    window: timedelta,
    unconfirmed: timedelta | None,
) -> Outcome:
    if entry.in_flight(now, window):
        return Outcome.IN_FLIGHT
    presence = pods.get(entry.namespace)
    if presence is None:
        return Outcome.UNKNOWN
    if presence.holds(entry):
        return Outcome.PRESENT if entry.missing_since is None else Outcome.CLEARED
    if entry.missing_since is None:
        if unconfirmed is not None and now - entry.updated_at < unconfirmed:
            return Outcome.UNCONFIRMED_RELEASED
        return Outcome.MARKED
    # A mark in the future (another replica's clock ahead of ours) waits until we catch up.
    if now - entry.missing_since >= grace:
        return Outcome.RELEASED
    return Outcome.WAITING


def unconfirmed_horizon(
    size_bytes: int, window: timedelta, interval: timedelta
) -> timedelta | None:
    """How young a missing claim must be to count as never confirmed, when it matters.

    Only a pool short of room (PRESSURE_BYTES) releases such claims early: a pod deleted
    before any sweep saw it looks the same, and with room to spare it keeps its grace (and so
    its sticky node, should it come back). Under pressure, forged or refused reviews must not
    hold the pool for the whole grace while real pods are turned away.
    """
    return window + interval if size_bytes >= PRESSURE_BYTES else None


def parse_malformed_since(text: str | None) -> dict[str, datetime]:
    """The annotation as key → time; anything unreadable counts as not recorded (restarts now)."""
    if not text:
        return {}
    try:
        doc = strict_json.loads(text)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    marks: dict[str, datetime] = {}
    for key, value in doc.items():
        if not isinstance(value, str):
            continue
        try:
            marks[key] = parse_time(value)
        except MalformedEntry:
            continue
    return marks


def format_malformed_since(marks: Mapping[str, datetime]) -> str | None:
    """Compact JSON with sorted keys, so an unchanged set of marks is unchanged text."""
    if not marks:
        return None
    doc = {key: format_time(marks[key]) for key in sorted(marks)}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
