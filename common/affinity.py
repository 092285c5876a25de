"""AffinityStore: reserve a VM name and sticky node in the pool's ConfigMap, race-safely.

The protocol is optimistic concurrency, the API server's own: GET the ConfigMap, plan purely
(`decisions.mutate.plan_entry`), write back guarded by the GET's resourceVersion. A 409 means
another replica (or a reaper) wrote first; we re-read and re-plan against its result, so no
reservation is ever lost or overwritten. Snapshots of pods and nodes are fetched once per
admission and reused across retries; only the entries are re-read.

Within one process, admissions to the same pool are serialised by a lock around
read-plan-write: they would only conflict with each other, and a lock is cheaper than a 409.
The resourceVersion stays the source of truth across processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from common import metrics
from common.decisions.mutate import (
    REASON_CONFLICTS,
    REASON_DEADLINE,
    REASON_UNREACHABLE,
    Draft,
    Failed,
    Intent,
    Need,
    plan_entry,
    reason_api_error,
)
from common.kube import AlreadyExists, ConfigMap, Conflict, KubeApi, KubeError, NotFound
from common.naming import AFFINITY_NAMESPACE, POOL_KEY, affinity_configmap_name, affinity_labels
from common.pod import NodeView, PodSummary, nodes_from_json, pods_from_json
from common.reservation import data_bytes

MAX_ATTEMPTS = 5
# Node pod LISTs for a fresh pick run side by side; pools hold a handful of nodes.
NODE_LIST_WORKERS = 8


class DeadlineExceeded(Exception):
    pass


@dataclass
class _Snapshots:
    """Cluster state read at most once per admission, reused across conflict retries."""

    live_pods: Sequence[PodSummary] | None = None
    nodes: Sequence[NodeView] | None = None
    node_pods: dict[str, Sequence[PodSummary]] = field(default_factory=dict)


class AffinityStore:
    def __init__(
        self,
        kube: KubeApi,
        window: timedelta,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._window = window
        self._clock = clock
        self._monotonic = monotonic
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._node_lister = ThreadPoolExecutor(NODE_LIST_WORKERS, "node-pods")

    def _pool_lock(self, pool: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(pool, threading.Lock())

    def _remaining(self, deadline: float) -> float:
        left = deadline - self._monotonic()
        if left <= 0:
            raise DeadlineExceeded
        return left

    def reserve(self, intent: Intent, deadline: float, dry_run: bool) -> Draft | Failed:
        """Plan and (unless dry run) store the pod's entry, or say why not; never raises."""
        try:
            return self._reserve(intent, deadline, dry_run)
        except DeadlineExceeded:
            return Failed(REASON_DEADLINE)
        except KubeError as exc:
            if self._monotonic() >= deadline:
                return Failed(REASON_DEADLINE)
            if exc.status is None:
                return Failed(REASON_UNREACHABLE)
            return Failed(reason_api_error(exc.status))

    def _reserve(self, intent: Intent, deadline: float, dry_run: bool) -> Draft | Failed:
        snapshots = _Snapshots()
        # Snapshots every plan needs are read before taking the pool lock, so admissions of
        # one pool overlap their LISTs and serialise only their read-plan-write.
        raw_nodes = self._kube.list_nodes(f"{POOL_KEY}={intent.pool}", self._remaining(deadline))
        snapshots.nodes = nodes_from_json(raw_nodes)
        if intent.needs_live_pods:
            snapshots.live_pods = self._namespace_pods(intent.namespace, deadline)
        name = affinity_configmap_name(intent.pool)
        lock = self._pool_lock(intent.pool)
        for _ in range(MAX_ATTEMPTS):
            if not lock.acquire(timeout=self._remaining(deadline)):
                raise DeadlineExceeded
            try:
                stored = self._get(name, deadline)
                entries = stored.data if stored else {}
                metrics.record_pool_size(intent.pool, len(entries), data_bytes(entries))
                result = self._plan(intent, entries, snapshots, deadline)
                if isinstance(result, Failed) or dry_run or not result.write:
                    if isinstance(result, Draft) and not dry_run:
                        metrics.RESERVATIONS_TOTAL.labels(pool=intent.pool).inc()
                    return result
                if self._write(intent.pool, name, stored, result, deadline):
                    metrics.RESERVATIONS_TOTAL.labels(pool=intent.pool).inc()
                    return result
            finally:
                lock.release()
            metrics.CONFLICTS_TOTAL.labels(pool=intent.pool).inc()
        return Failed(REASON_CONFLICTS)

    def _get(self, name: str, deadline: float) -> ConfigMap | None:
        try:
            return self._kube.get_configmap(AFFINITY_NAMESPACE, name, self._remaining(deadline))
        except NotFound:
            return None

    def _plan(
        self, intent: Intent, entries: dict[str, str], snapshots: _Snapshots, deadline: float
    ) -> Draft | Failed:
        while True:
            result = plan_entry(
                intent,
                entries,
                live_pods=snapshots.live_pods,
                nodes=snapshots.nodes or (),
                node_pods=snapshots.node_pods,
                now=self._clock(),
                window=self._window,
            )
            if not isinstance(result, Need):
                return result
            if result.live_pods:
                snapshots.live_pods = self._namespace_pods(intent.namespace, deadline)
            if result.node_pods:
                snapshots.node_pods.update(self._pods_on_nodes(result.node_pods, deadline))

    def _namespace_pods(self, namespace: str, deadline: float) -> list[PodSummary]:
        return pods_from_json(self._kube.list_pods(namespace, "", self._remaining(deadline)))

    def _pods_on_nodes(
        self, nodes: Sequence[str], deadline: float
    ) -> dict[str, Sequence[PodSummary]]:
        def live_pods_on(node: str) -> Sequence[PodSummary]:
            selector = f"spec.nodeName={node},status.phase!=Succeeded,status.phase!=Failed"
            return pods_from_json(self._kube.list_pods(None, selector, self._remaining(deadline)))

        futures = {node: self._node_lister.submit(live_pods_on, node) for node in nodes}
        return {node: future.result() for node, future in futures.items()}

    def _write(
        self, pool: str, name: str, stored: ConfigMap | None, draft: Draft, deadline: float
    ) -> bool:
        """Store the draft; False when someone else wrote first (re-read and re-plan)."""
        data = draft.apply(stored.data if stored else {})
        # Labels are (re)set on every write: the reaper finds ConfigMaps only by label.
        labels = {**(stored.labels if stored else {}), **affinity_labels(pool)}
        updated = ConfigMap(
            name=name,
            namespace=AFFINITY_NAMESPACE,
            data=data,
            labels=labels,
            annotations=stored.annotations if stored else {},
            resource_version=stored.resource_version if stored else "",
        )
        try:
            if stored is None:
                self._kube.create_configmap(updated, self._remaining(deadline))
            else:
                self._kube.replace_configmap(updated, self._remaining(deadline))
        except (Conflict, AlreadyExists):
            return False
        except NotFound:
            return False  # deleted since our GET: the next attempt re-reads and creates it
        metrics.record_pool_size(pool, len(data), data_bytes(data))
        return True
