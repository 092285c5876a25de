"""The object store: one lock, one global resourceVersion, a bounded event log for watches.

Stored objects are never mutated in place: every write stores a fresh dict, so the REST layer may
serialise a reference it read under the lock after releasing it. Every write (create, update,
delete) takes the next resourceVersion and appends exactly one event, so event `i` of the log has
resourceVersion `first_rv + i` and a watch finds its starting point by arithmetic.

`get` and `list` are the interface other emulator modules (the admission chain) use; they return
deep copies. The REST layer uses `peek`/`scan` (shared references) and the `create`/`update`/
`delete` commits, which check the expected resourceVersion under the lock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.kube_emulator import errors
from tests.kube_emulator.resources import Registry

Obj = dict[str, Any]
Objs = list[Obj]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
Precheck = Callable[["Store"], None]


def _order(key: Key) -> str:
    return f"{key[0]}/{key[1]}" if key[0] else key[1]


def clone(obj: Any) -> Any:
    """Deep copy of JSON-shaped data (a JSON round trip beats copy.deepcopy on these trees)."""
    return json.loads(json.dumps(obj))


@dataclass(frozen=True)
class Event:
    rv: int
    group: str
    resource: str
    namespace: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    old: Obj | None


Events = list[Event]
Owned = list[tuple[str, str, Obj]]


class Store:
    def __init__(self, registry: Registry, max_events: int = 20000) -> None:
        self.registry = registry
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._objects: dict[tuple[str, str], dict[Key, Obj]] = {}
        # Keys of each resource in etcd order, kept until the resource's next write: a paged
        # LIST of 50,000 pods asks for the order a hundred times.
        self._ordered: dict[tuple[str, str], list[Key]] = {}
        self._rv = 1
        self._events: list[Event] = []
        self._first_rv = 2  # resourceVersion of _events[0], or of the next event when empty
        self._max_events = max_events
        # Bumped by reset(): open watches end, like watches of a restarted API server.
        self.epoch = 0

    # -- read interface shared with admission.py and crd.py (deep copies) ----------------------

    def get(self, group: str, resource: str, namespace: str | None, name: str) -> Obj | None:
        obj = self.peek(group, resource, namespace or "", name)
        return None if obj is None else clone(obj)

    def list(self, group: str, resource: str, namespace: str | None = None) -> list[Obj]:
        _rv, items = self.scan(group, resource, namespace)
        return clone(items)  # type: ignore[no-any-return]

    # -- REST-layer reads (shared, immutable references) ----------------------------------------

    def peek(self, group: str, resource: str, namespace: str, name: str) -> Obj | None:
        with self.lock:
            return self._objects.get((group, resource), {}).get((namespace, name))

    def scan(self, group: str, resource: str, namespace: str | None = None) -> tuple[int, Objs]:
        """The current resourceVersion and the objects in key order ("<namespace>/<name>")."""
        with self.lock:
            bucket = self._objects.get((group, resource), {})
            ordered = self._ordered.get((group, resource))
            if ordered is None:
                # etcd order: by the key string "<namespace>/<name>" (continue tokens rely on it)
                ordered = self._ordered[(group, resource)] = sorted(bucket, key=_order)
            keys = (k for k in ordered if k[0] == namespace) if namespace else ordered
            return self._rv, [bucket[k] for k in keys]

    def objects_in_namespace(self, namespace: str) -> Owned:
        """Every namespaced object in `namespace` as (group, resource, obj)."""
        with self.lock:
            out = []
            for (group, resource), bucket in self._objects.items():
                for (ns, _name), obj in sorted(bucket.items()):
                    if ns == namespace:
                        out.append((group, resource, obj))
            return out

    @property
    def resource_version(self) -> int:
        with self.lock:
            return self._rv

    @property
    def compacted_rv(self) -> int:
        """Events at or below this resourceVersion are gone: watching from there is 410 Gone."""
        with self.lock:
            return self._first_rv - 1

    # -- writes ----------------------------------------------------------------------------------

    def _commit(self, group: str, resource: str, etype: str, obj: Obj, old: Obj | None) -> Obj:
        self._rv += 1
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(self._rv)
        key = (meta.get("namespace", ""), meta["name"])
        bucket = self._objects.setdefault((group, resource), {})
        if etype != "MODIFIED":
            self._ordered.pop((group, resource), None)
        if etype == "DELETED":
            bucket.pop(key, None)
        else:
            bucket[key] = obj
        if not self._events:
            self._first_rv = self._rv
        self._events.append(Event(self._rv, group, resource, key[0], etype, obj, old))
        if len(self._events) > self._max_events:
            drop = len(self._events) - self._max_events // 2
            del self._events[:drop]
            self._first_rv += drop
        self.changed.notify_all()
        return obj

    def create(self, group: str, resource: str, obj: Obj, precheck: Precheck | None = None) -> Obj:
        """Store a new object; 409 AlreadyExists if the key is taken. `obj` becomes the store's."""
        meta = obj["metadata"]
        with self.lock:
            if precheck is not None:
                precheck(self)
            key = (meta.get("namespace", ""), meta["name"])
            if key in self._objects.get((group, resource), {}):
                raise errors.already_exists(group, resource, meta["name"])
            return self._commit(group, resource, "ADDED", obj, None)

    def update(self, group: str, resource: str, obj: Obj, expected_rv: str) -> Obj:
        """Replace the object whose current resourceVersion is `expected_rv`, else 409 Conflict."""
        with self.lock:
            old = self._guarded(group, resource, obj, expected_rv)
            return self._commit(group, resource, "MODIFIED", obj, old)

    def delete(self, group: str, resource: str, obj: Obj, expected_rv: str) -> Obj:
        """Remove the object; `obj` is its final state (the DELETED event carries it)."""
        with self.lock:
            old = self._guarded(group, resource, obj, expected_rv)
            return self._commit(group, resource, "DELETED", obj, old)

    def _guarded(self, group: str, resource: str, obj: Obj, expected_rv: str) -> Obj:
        """The stored object `obj` replaces, if its resourceVersion is still `expected_rv`."""
        meta = obj["metadata"]
        name = meta["name"]
        old = self._objects.get((group, resource), {}).get((meta.get("namespace", ""), name))
        if old is None:
            raise errors.not_found(group, resource, name)
        if old["metadata"].get("resourceVersion") != expected_rv:
            raise errors.stale(group, resource, name)
        return old

    def drop_resource(self, group: str, resource: str) -> None:
        """Delete every object of a resource, one DELETED event each (its CRD went away)."""
        with self.lock:
            for obj in list(self._objects.get((group, resource), {}).values()):
                self._commit(group, resource, "DELETED", clone(obj), obj)
            self._objects.pop((group, resource), None)
            self._ordered.pop((group, resource), None)

    # -- watch -----------------------------------------------------------------------------------

    def events_after(self, rv: int) -> Events | None:
        """Events newer than `rv`; None when `rv` is older than the log (the caller answers 410)."""
        with self.lock:
            if rv < self._first_rv - 1:
                return None
            start = rv + 1 - self._first_rv
            return self._events[max(start, 0) :]

    def wait(self, rv: int, epoch: int, timeout: float) -> None:
        """Block until something newer than `rv` is stored, a reset happens, or `timeout` passes."""
        with self.lock:
            if self._rv > rv or self.epoch != epoch:
                return
            self.changed.wait(timeout)

    # -- control ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Empty the store and the event log; resourceVersions keep counting up, past every
        version a watcher holds, so it gets 410 and relists instead of resuming unaware."""
        with self.lock:
            self._objects.clear()
            self._ordered.clear()
            self._events.clear()
            self._rv += 1
            self._first_rv = self._rv + 1
            self.epoch += 1
            self.registry.reset()
            self.changed.notify_all()

    def compact(self) -> int:
        """Drop the event log, as etcd compaction does; returns the compacted resourceVersion."""
        with self.lock:
            self._events.clear()
            self._first_rv = self._rv + 1
            return self._rv
