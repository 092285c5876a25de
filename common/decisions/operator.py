"""kubectl cocoon: what the operator's commands see and change. Pure: no I/O, no clock.

An entry's state is the reaper's own judgement (`decisions.reap.judge`), so the plugin never
tells an operator "missing" where the reaper would say "in flight". Writes are planned here as
functions of one ConfigMap's data; `common.cli` applies them with resourceVersion-guarded PUTs
and, on a conflict, calls the same function on the fresh data, exactly as mutate and the reaper
do. A plan that no longer holds on the fresh data (the entry changed) stops instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from common.decisions.reap import Outcome, Presence, judge
from common.naming import MALFORMED_SINCE_ANNOTATION, POOL_KEY
from common.pod import NodeView
from common.reservation import (
    CONFIGMAP_DATA_LIMIT,
    MalformedEntry,
    Reservation,
    data_bytes,
    encode,
    read_entries,
)


class State(StrEnum):
    LIVE = "live"
    IN_FLIGHT = "in-flight"
    MISSING = "missing"
    UNKNOWN = "unknown"  # the namespace's pods could not be listed
    MALFORMED = "malformed"


_STATE_OF = {
    Outcome.IN_FLIGHT: State.IN_FLIGHT,
    Outcome.PRESENT: State.LIVE,
    Outcome.CLEARED: State.LIVE,
    Outcome.MARKED: State.MISSING,
    Outcome.WAITING: State.MISSING,
    Outcome.RELEASED: State.MISSING,
    Outcome.UNKNOWN: State.UNKNOWN,
    Outcome.MALFORMED: State.MALFORMED,
    Outcome.MALFORMED_RELEASED: State.MALFORMED,
}


class StoredConfigMap(Protocol):
    """What is read of an affinity ConfigMap (common.kube.ConfigMap has it)."""

    @property
    def name(self) -> str: ...

    @property
    def labels(self) -> dict[str, str]: ...

    @property
    def annotations(self) -> dict[str, str]: ...

    @property
    def data(self) -> dict[str, str]: ...


def pool_of(configmap: StoredConfigMap) -> str:
    """The label says which pool a ConfigMap holds, as for the reaper; a pool may span several."""
    return configmap.labels.get(POOL_KEY, "")


@dataclass(frozen=True)
class Row:
    """One entry of one ConfigMap, with its state."""

    pool: str
    configmap: str
    key: str
    value: str
    state: State
    entry: Reservation | None  # None when malformed
    reason: str = ""  # why it is malformed
    due: bool = False  # missing past the grace: the next sweep releases it

    @property
    def namespace(self) -> str:
        return self.entry.namespace if self.entry else ""

    @property
    def node(self) -> str:
        return self.entry.node if self.entry else ""

    @property
    def vm_name(self) -> str:
        return self.entry.vm_name if self.entry else ""

    @property
    def protected(self) -> bool:
        """Releasing it would hand a running (or just admitted) pod's VM name to another pod."""
        return self.state in (State.LIVE, State.IN_FLIGHT, State.UNKNOWN)


def rows(
    configmaps: Iterable[StoredConfigMap],
    pods: Mapping[str, Presence | None],
    now: datetime,
    grace: timedelta,
    window: timedelta,
) -> list[Row]:
    """Every entry of the pools' ConfigMaps (those with a pool label), sorted by pool and key."""
    out: list[Row] = []
    for cm in configmaps:
        pool = pool_of(cm)
        if not pool:
            continue
        entries = read_entries(cm.data)
        changes = judge(
            entries, cm.annotations.get(MALFORMED_SINCE_ANNOTATION), pods, now, grace, window
        )
        for key, entry in entries.items():
            outcome = changes.outcomes[key]
            out.append(
                Row(
                    pool=pool,
                    configmap=cm.name,
                    key=key,
                    value=cm.data[key],
                    state=_STATE_OF[outcome],
                    entry=entry if isinstance(entry, Reservation) else None,
                    reason=entry.reason if isinstance(entry, MalformedEntry) else "",
                    due=outcome in (Outcome.RELEASED, Outcome.MALFORMED_RELEASED),
                )
            )
    out.sort(key=lambda r: (r.pool, r.key, r.configmap))
    return out


def select(
    found: Iterable[Row],
    *,
    pool: str | None = None,
    namespace: str | None = None,
    node: str | None = None,
    state: State | None = None,
) -> list[Row]:
    """The rows matching every filter given. A namespace filter drops malformed rows, which
    belong to no namespace."""
    return [
        r
        for r in found
        if (pool is None or r.pool == pool)
        and (namespace is None or r.namespace == namespace)
        and (node is None or r.node == node)
        and (state is None or r.state == state)
    ]


# --- pools ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigMapFill:
    name: str
    entries: int
    bytes: int

    @property
    def percent(self) -> float:
        return 100.0 * self.bytes / CONFIGMAP_DATA_LIMIT


@dataclass(frozen=True)
class NodeUse:
    name: str
    vms: int  # entries pinned to it
    in_pool: bool  # still labelled for the pool (a retired node is not)
    ready: str  # Ready condition status, "" when unknown
    cordoned: bool

    @property
    def status(self) -> str:
        """kubectl's STATUS column, plus `NotInPool` for a node entries still point at."""
        if not self.in_pool:
            return "NotInPool"
        words = ["Ready" if self.ready == "True" else "NotReady"]
        if self.cordoned:
            words.append("SchedulingDisabled")
        return ",".join(words)


@dataclass(frozen=True)
class PoolSummary:
    pool: str
    configmaps: tuple[ConfigMapFill, ...]
    nodes: tuple[NodeUse, ...]

    @property
    def entries(self) -> int:
        return sum(cm.entries for cm in self.configmaps)


def pools(configmaps: Iterable[StoredConfigMap], nodes: Sequence[NodeView]) -> list[PoolSummary]:
    """Per pool: each ConfigMap's fill, and each node of the pool or still pinned to by an entry."""
    fills: dict[str, list[ConfigMapFill]] = {}
    pinned: dict[str, dict[str, int]] = {}
    for cm in configmaps:
        pool = pool_of(cm)
        if not pool:
            continue
        fills.setdefault(pool, []).append(ConfigMapFill(cm.name, len(cm.data), data_bytes(cm.data)))
        counts = pinned.setdefault(pool, {})
        for entry in read_entries(cm.data).values():
            if isinstance(entry, Reservation) and entry.node:
                counts[entry.node] = counts.get(entry.node, 0) + 1
    members: dict[str, dict[str, NodeView]] = {}
    for node in nodes:
        pool = node.labels.get(POOL_KEY, "")
        if pool:
            members.setdefault(pool, {})[node.name] = node
    out: list[PoolSummary] = []
    for pool in sorted(set(fills) | set(members)):
        listed = members.get(pool, {})
        counts = pinned.get(pool, {})
        uses = []
        for name in sorted(set(listed) | set(counts)):
            view = listed.get(name)
            uses.append(
                NodeUse(
                    name=name,
                    vms=counts.get(name, 0),
                    in_pool=view is not None,
                    ready=view.ready if view else "",
                    cordoned=view.unschedulable if view else False,
                )
            )
        configmaps_of = tuple(sorted(fills.get(pool, []), key=lambda f: f.name))
        out.append(PoolSummary(pool, configmaps_of, tuple(uses)))
    return out


# --- writes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stop:
    """The write no longer applies to the data as it is now; `reason` says why, in one line."""

    reason: str


def release(data: Mapping[str, str], key: str, seen: str) -> dict[str, str] | Stop:
    """Compare-and-delete: the data without `key`, only while its value is still `seen`."""
    current = data.get(key)
    if current is None:
        return Stop(f"entry {key} is gone already")
    if current != seen:
        return Stop(f"entry {key} changed since it was read; look again before releasing it")
    return {k: v for k, v in data.items() if k != key}


def unpin(
    data: Mapping[str, str], node: str, namespace: str | None = None
) -> tuple[dict[str, str], list[str]]:
    """The data with `node` cleared from every entry pinned to it (of pods in `namespace`, when
    given), and those entries' keys.

    Only `node` changes: the VM name, slot and claim stay, so the replacement pod keeps its
    identity and mutate places it anew (an entry without a node has no sticky node).
    """
    out = dict(data)
    changed: list[str] = []
    for key, entry in read_entries(data).items():
        if (
            isinstance(entry, Reservation)
            and entry.node == node
            and (namespace is None or entry.namespace == namespace)
        ):
            out[key] = encode(replace(entry, node=""))
            changed.append(key)
    return out, sorted(changed)


def matches(found: Iterable[Row], *, key: str | None, vm_name: str | None) -> list[Row]:
    """The rows `release KEY` or `release --vm NAME` names."""
    return [
        r
        for r in found
        if (key is not None and r.key == key) or (vm_name is not None and r.vm_name == vm_name)
    ]
