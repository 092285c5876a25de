"""Watch-fed caches of what mutate reads: pods (compact summaries), pool nodes, affinity ConfigMaps.

One `Reflector` type serves all three, as client-go's does: a paginated LIST (`limit` +
`continue`), then a WATCH from the list's resourceVersion with bookmarks. A 410 Gone (the
version was compacted) relists; a watch that fails or drops resumes from the last version seen,
with backoff while it keeps failing (410s with nothing heard between them included); a watch
the server ends on its timeout resumes at once. Nothing ends the thread but `stop`.

A cache is advisory. The affinity write stays guarded by resourceVersion, and a pod admitted but
not yet seen by the pod cache is still counted through its in-flight claim, so a cache that lags
by less than the in-flight window cannot hand out a slot twice. Hence `heard_within`: a cache
that has heard nothing (no event, bookmark or clean watch end) for longer than the configured
silence limit is not trusted, and mutate reads directly instead (`common.affinity`).

Everything goes through `KubeApi`; the threads start in the serving process, after any fork
(`ClusterCaches.ensure_started`), never at import.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from typing import Any, Generic, TypeVar

from prometheus_client import Counter, Gauge

from common.kube import ConfigMap, Gone, KubeApi, KubeError
from common.logs import get_logger
from common.naming import AFFINITY_NAMESPACE, MANAGED_BY_LABEL, MANAGED_BY_VALUE, POOL_KEY
from common.pod import NodeView, PodSummary, nodes_from_json

LIST_TIMEOUT_S = 30.0
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 10.0

CACHE_SYNCED = Gauge(
    "cocoon_webhook_cache_synced", "1 once the cache's first LIST is in, by cache.", ["cache"]
)
CACHE_OBJECTS = Gauge("cocoon_webhook_cache_objects", "Objects held by the cache.", ["cache"])
CACHE_RELISTS = Counter(
    "cocoon_webhook_cache_relists_total", "LISTs after the first (410 Gone).", ["cache"]
)
CACHE_WATCH_FAILURES = Counter(
    "cocoon_webhook_cache_watch_failures_total", "Watches that failed or dropped.", ["cache"]
)
CACHE_SILENCE = Gauge(
    "cocoon_webhook_cache_last_event_age_seconds",
    "Seconds since the API server last told the cache anything (an event, a bookmark, a LIST, "
    "a watch it ended); NaN before the first LIST. mutate stops trusting it past "
    "CACHE_MAX_SILENCE.",
    ["cache"],
)

_log = get_logger("cache")

V = TypeVar("V")


def _newer(candidate: str, current: str) -> bool:
    """Whether `candidate` is a later resourceVersion than `current`. Versions are opaque to
    clients, but every API server backed by etcd numbers them; if not numbers, trust the newer
    arrival, as client-go's informers do."""
    if candidate.isdigit() and current.isdigit():
        return int(candidate) >= int(current)
    return True


class Index(Generic[V]):
    """Objects of one kind by key, kept as compact values; subclasses add secondary indexes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._items: dict[str, V] = {}

    def convert(self, obj: dict[str, Any]) -> V | None:
        raise NotImplementedError

    def key(self, value: V) -> str:
        raise NotImplementedError

    def _added(self, key: str, value: V) -> None:
        """Secondary indexes: `value` is now stored under `key`."""

    def _removed(self, key: str, value: V) -> None:
        """Secondary indexes: `value` no longer is."""

    def _clear(self) -> None:
        """Secondary indexes: start over."""

    def _accepts(self, old: V, new_version: str) -> bool:
        return True

    def replace(self, values: Iterable[V]) -> None:
        with self.lock:
            self._items = {}
            self._clear()
            for value in values:
                self._put(value)

    def apply(self, event_type: str, value: V, version: str) -> None:
        key = self.key(value)
        with self.lock:
            old = self._items.get(key)
            if old is not None and not self._accepts(old, version):
                return
            if event_type == "DELETED":
                if old is not None:
                    del self._items[key]
                    self._removed(key, old)
            else:
                self._put(value)

    def _put(self, value: V) -> None:
        key = self.key(value)
        old = self._items.get(key)
        if old is not None:
            self._removed(key, old)
        self._items[key] = value
        self._added(key, value)

    def __len__(self) -> int:
        return len(self._items)


class PodIndex(Index[PodSummary]):
    """Every pod of the cluster as a PodSummary, by namespace and by node."""

    def __init__(self) -> None:
        super().__init__()
        self._by_namespace: dict[str, dict[str, PodSummary]] = {}
        self._by_node: dict[str, dict[str, PodSummary]] = {}
        self._live_by_node: dict[str, set[tuple[str, str]]] = {}

    def convert(self, obj: dict[str, Any]) -> PodSummary | None:
        pod = PodSummary.from_json(obj)
        return pod if pod.name else None

    def key(self, value: PodSummary) -> str:
        return f"{value.namespace}/{value.name}"

    def _added(self, key: str, value: PodSummary) -> None:
        self._by_namespace.setdefault(value.namespace, {})[value.name] = value
        if value.node_name:
            self._by_node.setdefault(value.node_name, {})[key] = value
            if value.live:
                self._live_by_node.setdefault(value.node_name, set()).add(
                    (value.namespace, value.name)
                )

    def _removed(self, key: str, value: PodSummary) -> None:
        _discard(self._by_namespace, value.namespace, value.name)
        if value.node_name:
            _discard(self._by_node, value.node_name, key)
            live = self._live_by_node.get(value.node_name)
            if live is not None:
                live.discard((value.namespace, value.name))

    def _clear(self) -> None:
        self._by_namespace = {}
        self._by_node = {}
        self._live_by_node = {}

    def in_namespace(self, namespace: str) -> list[PodSummary]:
        """The namespace's pods in any phase (what a namespace LIST returns)."""
        with self.lock:
            return list(self._by_namespace.get(namespace, {}).values())

    def live_keys_on(self, node: str) -> AbstractSet[tuple[str, str]]:
        """(namespace, name) of the node's live pods: a live view, kept current by the watch,
        so the picker counts a node in O(1) however many pods it runs."""
        with self.lock:
            return self._live_by_node.setdefault(node, set())

    def live_on(self, node: str) -> list[PodSummary]:
        """The node's pods that have not finished (the picker's field-selected LIST)."""
        with self.lock:
            return [p for p in self._by_node.get(node, {}).values() if p.live]


class NodeIndex(Index[NodeView]):
    """Nodes that carry a pool label, by pool."""

    def __init__(self) -> None:
        super().__init__()
        self._by_pool: dict[str, dict[str, NodeView]] = {}

    def convert(self, obj: dict[str, Any]) -> NodeView | None:
        views = nodes_from_json([obj])
        return views[0] if views else None

    def key(self, value: NodeView) -> str:
        return value.name

    def _added(self, key: str, value: NodeView) -> None:
        self._by_pool.setdefault(value.labels.get(POOL_KEY, ""), {})[key] = value

    def _removed(self, key: str, value: NodeView) -> None:
        _discard(self._by_pool, value.labels.get(POOL_KEY, ""), key)

    def _clear(self) -> None:
        self._by_pool = {}

    def in_pool(self, pool: str) -> list[NodeView]:
        with self.lock:
            return list(self._by_pool.get(pool, {}).values())


class ConfigMapIndex(Index[ConfigMap]):
    """The affinity ConfigMaps, by name. Our own writes go in at once (`remember`), so the next
    admission plans on them without waiting for their watch event; an event older than what is
    held (a write of ours overtook it) is ignored."""

    def convert(self, obj: dict[str, Any]) -> ConfigMap | None:
        configmap = ConfigMap.from_json(obj)
        return configmap if configmap.name else None

    def key(self, value: ConfigMap) -> str:
        return value.name

    def _accepts(self, old: ConfigMap, new_version: str) -> bool:
        return _newer(new_version, old.resource_version)

    def get(self, name: str) -> ConfigMap | None:
        with self.lock:
            return self._items.get(name)

    def remember(self, configmap: ConfigMap) -> None:
        self.apply("MODIFIED", configmap, configmap.resource_version)

    def forget(self, name: str) -> None:
        """Drop a ConfigMap the API said is gone; its DELETED event may still be on its way."""
        with self.lock:
            old = self._items.pop(name, None)
            if old is not None:
                self._removed(name, old)


def _discard(index: dict[str, dict[str, Any]], outer: str, inner: str) -> None:
    bucket = index.get(outer)
    if bucket is not None:
        bucket.pop(inner, None)
        if not bucket:
            del index[outer]


class Reflector:
    """LIST then WATCH one collection into an Index, in a thread of its own, forever."""

    def __init__(
        self,
        kube: KubeApi,
        name: str,
        collection: str,
        label_selector: str,
        index: Index[Any],
        *,
        watch_timeout_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self.name = name
        self._collection = collection
        self._selector = label_selector
        self.index = index
        self._watch_timeout_s = watch_timeout_s
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._heard_at: float | None = None
        self._thread: threading.Thread | None = None
        self.relists = 0
        self.events = 0  # events applied, bookmarks included: the watch made progress
        self._objects = CACHE_OBJECTS.labels(cache=name)
        # Present from the start, so "not synced yet" is a 0 an alert can see, not a gap.
        CACHE_SYNCED.labels(cache=name).set(0)
        CACHE_SILENCE.labels(cache=name).set_function(self._silence_or_nan)
        self.version = ""  # the resourceVersion the next watch starts from; "" = LIST first

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def silence_s(self) -> float | None:
        """Seconds since the API server last told this cache anything; None before the first."""
        return None if self._heard_at is None else self._monotonic() - self._heard_at

    def _silence_or_nan(self) -> float:
        silence = self.silence_s()
        return math.nan if silence is None else silence

    def heard_within(self, limit_s: float) -> bool:
        silence = self.silence_s()
        return self.synced and silence is not None and silence <= limit_s

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"reflector-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; an open watch ends on its own timeout at the latest."""
        self._stop.set()

    def _heard(self) -> None:
        self._heard_at = self._monotonic()

    def _run(self) -> None:
        failures = 0  # attempts in a row that ended in an error with no event heard meanwhile
        while not self._stop.is_set():
            events_before = self.events
            try:
                if not self.version:
                    self.version = self._list()
                self._watch()
                failures = 0
                continue
            except Gone:
                # Compacted past our version: only a fresh LIST tells what changed meanwhile.
                CACHE_RELISTS.labels(cache=self.name).inc()
                self.relists += 1
                self.version = ""
                gone, error = True, ""
            except KubeError as exc:
                CACHE_WATCH_FAILURES.labels(cache=self.name).inc()
                gone, error = False, str(exc)
            except Exception as exc:  # an answer no API server should send: retry, never end
                CACHE_WATCH_FAILURES.labels(cache=self.name).inc()
                gone, error = False, f"{type(exc).__name__}: {exc}"
            # A watch that delivered events was healthy until it ended: the backoff starts
            # over. Errors with nothing heard in between back off, 410s included: a 410 right
            # after each LIST would otherwise relist the whole collection in a tight loop.
            failures = 1 if self.events != events_before else failures + 1
            delay = 0.0 if gone and failures == 1 else self._backoff(failures)
            if gone:
                _log.info("watch expired (410); relisting",
                          extra={"cache": self.name, "backoffS": round(delay, 3)})  # fmt: skip
            else:
                _log.warning(
                    "watch failed; resuming after backoff",
                    extra={"cache": self.name, "error": error,
                           "backoffS": round(delay, 3), "failures": failures},
                )  # fmt: skip
            if delay:
                self._stop.wait(delay)

    @staticmethod
    def _backoff(failures: int) -> float:
        """Jittered to half, so replicas that failed together do not come back together."""
        return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0 ** (failures - 1)) * random.uniform(0.5, 1)

    def _list(self) -> str:
        """Every page, then the Index replaced at once: readers never see half a list."""
        values: list[Any] = []
        token = ""
        while True:
            page = self._kube.list_page(self._collection, self._selector, token, LIST_TIMEOUT_S)
            values.extend(v for v in map(self.index.convert, page.items) if v is not None)
            token = page.continue_token
            if not token:
                break
        self.index.replace(values)
        self._heard()
        self._objects.set(len(self.index))
        if not self._synced.is_set():
            self._synced.set()
            CACHE_SYNCED.labels(cache=self.name).set(1)
            _log.info("cache synced", extra={"cache": self.name, "objects": len(self.index)})
        return page.resource_version

    def _watch(self) -> None:
        """Apply events until the watch ends, advancing `version` past each (bookmarks too:
        a quiet collection's version stays recent, so a reconnect is not a 410)."""
        # Jittered so a fleet of replicas does not reconnect in step.
        timeout = max(1, int(self._watch_timeout_s * random.uniform(0.8, 1.0)))
        for event in self._kube.watch(self._collection, self._selector, self.version, timeout):
            if self._stop.is_set():
                break
            self._heard()
            self.events += 1
            kind = event.get("type")
            obj = event.get("object")
            if not isinstance(obj, dict):
                continue
            meta = obj.get("metadata")
            seen = meta.get("resourceVersion", "") if isinstance(meta, dict) else ""
            if kind == "ERROR":
                code = obj.get("code")
                if code == 410:
                    raise Gone(f"watch {self._collection}: {obj.get('message', '')}", 410)
                raise KubeError(f"watch {self._collection}: {obj.get('message', '')}", code)
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                value = self.index.convert(obj)
                if value is not None:
                    self.index.apply(kind, value, seen)
                    self._objects.set(len(self.index))
            self.version = seen or self.version
        else:
            self._heard()  # the server ended the watch on its timeout: still talking to us


class ClusterCaches:
    """The three caches mutate reads, started once per serving process."""

    def __init__(self, kube: KubeApi, max_silence_s: float) -> None:
        self._kube = kube
        self.max_silence_s = max_silence_s
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._build()

    def _build(self) -> None:
        # A watch ends well inside the silence limit, so a quiet but healthy cache keeps
        # hearing from the server even where it sends no bookmarks.
        timeout = max(1.0, self.max_silence_s / 2)
        self.pods = PodIndex()
        self.nodes = NodeIndex()
        self.configmaps = ConfigMapIndex()
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
        self.reflectors = (
            Reflector(self._kube, "pods", "/api/v1/pods", "", self.pods,
                      watch_timeout_s=timeout),
            Reflector(self._kube, "nodes", "/api/v1/nodes", POOL_KEY, self.nodes,
                      watch_timeout_s=timeout),
            Reflector(self._kube, "configmaps",
                      f"/api/v1/namespaces/{AFFINITY_NAMESPACE}/configmaps", selector,
                      self.configmaps, watch_timeout_s=timeout),
        )  # fmt: skip

    def ensure_started(self) -> None:
        """Start the reflectors in this process. Threads do not survive a fork: a child that
        inherited started caches from its parent builds and starts its own."""
        pid = os.getpid()
        with self._lock:
            if self._pid == pid:
                return
            if self._pid is not None:
                self._build()
            self._pid = pid
            for reflector in self.reflectors:
                reflector.start()

    def stop(self) -> None:
        for reflector in self.reflectors:
            reflector.stop()

    @property
    def synced(self) -> bool:
        return all(r.synced for r in self.reflectors)

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(r.wait_synced(max(0.0, deadline - time.monotonic())) for r in self.reflectors)

    def stale(self) -> list[str]:
        """Caches not to be trusted now: not synced, or silent past the limit."""
        return [r.name for r in self.reflectors if not r.heard_within(self.max_silence_s)]

    async def readiness(self) -> tuple[bool, str]:
        self.ensure_started()
        waiting = [r.name for r in self.reflectors if not r.synced]
        if waiting:
            return False, f"not ready: caches not synced yet ({', '.join(waiting)})"
        return True, "ready"
