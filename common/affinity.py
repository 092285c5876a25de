"""AffinityStore: reserve a VM name and sticky node in the pool's ConfigMap, race-safely.

The protocol is optimistic concurrency, the API server's own: GET the ConfigMap, plan purely
(`decisions.mutate.plan_entry`), write back guarded by the GET's resourceVersion. A 409 means
another replica (or the reaper) wrote first; we re-read and re-plan against its result, so no
reservation is ever lost or overwritten. Snapshots of pods and nodes are read once per
admission, before any waiting, and reused across retries; only the entries are re-read.

Group commit: one ConfigMap takes one write per round trip, so replicas that each write one
entry at a time starve each other under a burst (each attempt wins with 1/replicas odds, and
five losses in a row fail the admission open). Instead, the admissions of one pool waiting in
a process are planned together, one after another against the evolving entries, and stored
in a single guarded write; the first waiter to take the pool's lock leads the batch. A
conflict re-plans the whole batch. A burst therefore costs each replica a few writes, not one
per pod, and its admissions stop competing with each other at all.

Transient API failures (no answer, 429, 5xx) are retried through `common.retry`, on reads and
on the guarded write alike; a retried write that had landed gets a 409 and the re-read finds
its entries already there. Those retries and the conflict rounds draw from one budget per
admission: its deadline, and MAX_ATTEMPTS tries beyond the first.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from common import metrics
from common.decisions.mutate import (
    MAX_UNCONFIRMED_PER_NAMESPACE,
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
from common.logs import get_logger
from common.naming import AFFINITY_NAMESPACE, POOL_KEY, affinity_configmap_name, affinity_labels
from common.pod import NodeView, PodSummary, nodes_from_json, pods_from_json
from common.reservation import data_bytes
from common.retry import Budget, DeadlineExceeded, Retrier

# Retries an admission may make, within its deadline: lost writes and transient failures
# together. SPEC 5.8 says 5 lost writes for one writer per entry; with group commit a batch's
# write window is longer than a lone entry's, and under a burst from several replicas five lost
# rounds in a row happen, failing pods open for no good reason. The deadline is the real bound
# (B13); this cap only bounds the work.
MAX_ATTEMPTS = 16
CONFLICT_JITTER_S = 0.002
# A node's pod LIST is reused by this process for this long. Pods admitted since are counted
# through their in-flight entries, so a slightly old LIST does not skew the least-used pick;
# it keeps LISTs out of the batch's read-plan-write window, where they invite conflicts.
NODE_PODS_TTL_S = 1.0
# Node pod LISTs for a fresh pick run side by side; pools hold a handful of nodes.
NODE_LIST_WORKERS = 8

_log = get_logger("affinity")


def _failure(exc: KubeError) -> Failed:
    if exc.status is None:
        return Failed(REASON_UNREACHABLE)
    return Failed(reason_api_error(exc.status))


@dataclass
class _Snapshots:
    """Cluster state read at most once per admission, reused across conflict retries."""

    live_pods: Sequence[PodSummary] | None = None
    nodes: Sequence[NodeView] = ()
    node_pods: dict[str, Sequence[PodSummary]] = field(default_factory=dict)


@dataclass
class _Ticket:
    """One admission waiting in its pool's batch."""

    intent: Intent
    snapshots: _Snapshots
    deadline: float
    result: Draft | Failed | None = None
    attempts: int = 0  # retries made for it: writes lost to a conflict, transient failures
    abandoned: bool = False  # its caller gave up waiting; a leader must not start on it

    def spend(self) -> bool:
        self.attempts += 1
        return self.attempts < MAX_ATTEMPTS


@dataclass
class _Batch:
    """The budget of a batch's shared read and write: a retry is charged to every ticket."""

    tickets: Sequence[_Ticket]

    @property
    def deadline(self) -> float:
        return max(t.deadline for t in self.tickets)

    def spend(self) -> bool:
        charged = [ticket.spend() for ticket in self.tickets]  # every one, not up to the first
        return any(charged)


@dataclass
class _Pool:
    leader: threading.Lock = field(default_factory=threading.Lock)
    guard: threading.Lock = field(default_factory=threading.Lock)
    waiting: list[_Ticket] = field(default_factory=list)
    node_pods: dict[str, Sequence[PodSummary]] = field(default_factory=dict)
    node_pods_at: float = 0.0


class AffinityStore:
    def __init__(
        self,
        kube: KubeApi,
        window: timedelta,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_unconfirmed: int = MAX_UNCONFIRMED_PER_NAMESPACE,
    ) -> None:
        self._kube = kube
        self._max_unconfirmed = max_unconfirmed
        self._sleep = sleep
        self._window = window
        self._clock = clock
        self._monotonic = monotonic
        self._pools: dict[str, _Pool] = {}
        self._pools_guard = threading.Lock()
        self._node_lister = ThreadPoolExecutor(NODE_LIST_WORKERS, "node-pods")
        self._retrier = Retrier("mutate", monotonic=monotonic, sleep=sleep)

    def _pool(self, pool: str) -> _Pool:
        with self._pools_guard:
            return self._pools.setdefault(pool, _Pool())

    def reserve(self, intent: Intent, deadline: float, dry_run: bool) -> Draft | Failed:
        """Plan and (unless dry run) store the pod's entry, or say why not; never raises."""
        try:
            ticket = _Ticket(intent, _Snapshots(), deadline)
            self._snapshots(ticket)
            if dry_run:
                return self._dry_run(ticket)
            return self._reserve(ticket)
        except DeadlineExceeded:
            return Failed(REASON_DEADLINE)
        except KubeError as exc:
            if self._monotonic() >= deadline:
                return Failed(REASON_DEADLINE)
            return _failure(exc)

    def _snapshots(self, ticket: _Ticket) -> None:
        # Read before joining the batch, so admissions overlap their LISTs and serialise only
        # their read-plan-write.
        intent = ticket.intent
        raw_nodes = self._retrier.call(
            ticket, lambda timeout: self._kube.list_nodes(f"{POOL_KEY}={intent.pool}", timeout)
        )
        ticket.snapshots.nodes = nodes_from_json(raw_nodes)
        if intent.needs_live_pods:
            ticket.snapshots.live_pods = self._namespace_pods(intent.namespace, ticket)

    def _dry_run(self, ticket: _Ticket) -> Draft | Failed:
        """The same plan, from the same entries, with nothing written and no batch joined."""
        stored = self._get(affinity_configmap_name(ticket.intent.pool), ticket)
        return self._plan(ticket, stored.data if stored else {})

    def _reserve(self, ticket: _Ticket) -> Draft | Failed:
        pool = self._pool(ticket.intent.pool)
        with pool.guard:
            pool.waiting.append(ticket)
        if not pool.leader.acquire(timeout=max(ticket.deadline - self._monotonic(), 0)):
            with pool.guard:
                ticket.abandoned = ticket.result is None
            return ticket.result or Failed(REASON_DEADLINE)
        try:
            if ticket.result is None:  # no earlier leader resolved it: lead a batch ourselves
                self._lead(ticket.intent.pool, ticket)
        finally:
            pool.leader.release()
        assert ticket.result is not None
        return ticket.result

    def _take_waiting(self, name: str) -> list[_Ticket]:
        pool = self._pool(name)
        with pool.guard:
            batch = [t for t in pool.waiting if not t.abandoned]
            pool.waiting.clear()
        return batch

    def _hand_back(self, name: str, tickets: list[_Ticket]) -> None:
        """Unfinished tickets go back to the front of the queue; their own threads, waiting
        for the lead, carry on. A leader works only until its own admission is answered."""
        pool = self._pool(name)
        with pool.guard:
            pool.waiting[:0] = tickets

    def _lead(self, pool: str, own: _Ticket) -> None:
        """Plan the waiting tickets against the evolving entries and store them in one write,
        until `own` has its answer."""
        name = affinity_configmap_name(pool)
        state = self._pool(pool)
        pending = self._take_waiting(pool)
        if self._monotonic() - state.node_pods_at > NODE_PODS_TTL_S:
            state.node_pods = {}
        node_pods = state.node_pods
        node_pods_before = len(node_pods)
        try:
            while own.result is None:
                pending = self._expire(pending)
                if not pending:
                    return
                stored = self._get(name, _Batch(pending))
                entries = dict(stored.data) if stored else {}
                metrics.record_pool_size(pool, len(entries), data_bytes(entries))
                to_write: list[tuple[_Ticket, Draft]] = []
                for ticket in pending:
                    # One batch, one pool, one set of nodes: a node's pod LIST read for one
                    # ticket serves the rest, keeping the time spent holding the batch short.
                    for node, pods in node_pods.items():
                        ticket.snapshots.node_pods.setdefault(node, pods)
                    result = self._plan_or_fail(ticket, entries)
                    node_pods.update(ticket.snapshots.node_pods)
                    if isinstance(result, Draft) and result.write:
                        entries = result.apply(entries)
                        to_write.append((ticket, result))
                    else:
                        self._resolve(pool, ticket, result)
                if not to_write:
                    return
                if self._write(pool, name, stored, entries, _Batch([t for t, _ in to_write])):
                    for ticket, draft in to_write:
                        self._resolve(pool, ticket, draft)
                    return
                metrics.CONFLICTS_TOTAL.labels(pool=pool).inc()
                _log.debug(
                    "conflict",
                    extra={"pool": pool, "batch": len(to_write),
                           "attempts": max(t.attempts for t, _ in to_write) + 1},
                )  # fmt: skip
                for ticket, _ in to_write:
                    if not ticket.spend():
                        ticket.result = Failed(REASON_CONFLICTS)
                # Another replica won this round. A short jittered pause lets replicas fall
                # out of step; the retry carries everything that queued up meanwhile, since
                # the bigger our batch, the fewer rounds a burst needs.
                self._sleep(random.uniform(0, CONFLICT_JITTER_S))
                pending = [t for t, _ in to_write if t.result is None] + self._take_waiting(pool)
        except (KubeError, DeadlineExceeded) as exc:
            failure = _failure(exc) if isinstance(exc, KubeError) else Failed(REASON_DEADLINE)
            for ticket in pending:
                if ticket.result is None:
                    late = self._monotonic() >= ticket.deadline
                    ticket.result = Failed(REASON_DEADLINE) if late else failure
        finally:
            if len(node_pods) > node_pods_before and node_pods_before == 0:
                state.node_pods_at = self._monotonic()
            self._hand_back(pool, [t for t in pending if t.result is None])

    def _expire(self, tickets: list[_Ticket]) -> list[_Ticket]:
        now = self._monotonic()
        for ticket in tickets:
            if now >= ticket.deadline:
                ticket.result = Failed(REASON_DEADLINE)
        return [t for t in tickets if t.result is None]

    def _resolve(self, pool: str, ticket: _Ticket, result: Draft | Failed) -> None:
        if isinstance(result, Draft):
            metrics.RESERVATIONS_TOTAL.labels(pool=pool).inc()
        ticket.result = result

    def _plan_or_fail(self, ticket: _Ticket, entries: dict[str, str]) -> Draft | Failed:
        """One ticket's plan; its own fetch failures fail it alone, not the batch."""
        try:
            return self._plan(ticket, entries)
        except DeadlineExceeded:
            return Failed(REASON_DEADLINE)
        except KubeError as exc:
            return _failure(exc)

    def _get(self, name: str, budget: Budget) -> ConfigMap | None:
        try:
            return self._retrier.call(
                budget, lambda timeout: self._kube.get_configmap(AFFINITY_NAMESPACE, name, timeout)
            )
        except NotFound:
            return None

    def _plan(self, ticket: _Ticket, entries: dict[str, str]) -> Draft | Failed:
        snapshots = ticket.snapshots
        while True:
            result = plan_entry(
                ticket.intent,
                entries,
                live_pods=snapshots.live_pods,
                nodes=snapshots.nodes,
                node_pods=snapshots.node_pods,
                now=self._clock(),
                window=self._window,
                max_unconfirmed=self._max_unconfirmed,
            )
            if not isinstance(result, Need):
                return result
            if result.live_pods:
                snapshots.live_pods = self._namespace_pods(ticket.intent.namespace, ticket)
            if result.node_pods:
                fetched = self._pods_on_nodes(result.node_pods, ticket)
                snapshots.node_pods.update(fetched)

    def _namespace_pods(self, namespace: str, budget: Budget) -> list[PodSummary]:
        return pods_from_json(
            self._retrier.call(budget, lambda timeout: self._kube.list_pods(namespace, "", timeout))
        )

    def _pods_on_nodes(
        self, nodes: Sequence[str], budget: Budget
    ) -> dict[str, Sequence[PodSummary]]:
        def live_pods_on(node: str) -> Sequence[PodSummary]:
            selector = f"spec.nodeName={node},status.phase!=Succeeded,status.phase!=Failed"
            return pods_from_json(
                self._retrier.call(
                    budget, lambda timeout: self._kube.list_pods(None, selector, timeout)
                )
            )

        futures = {node: self._node_lister.submit(live_pods_on, node) for node in nodes}
        return {node: future.result() for node, future in futures.items()}

    def _write(
        self, pool: str, name: str, stored: ConfigMap | None, data: dict[str, str], budget: Budget
    ) -> bool:
        """Store `data`; False when someone else wrote first (re-read and re-plan). A transient
        failure is retried with the same resourceVersion: if the lost attempt had landed, the
        retry gets a 409 and the re-read finds the entries in place."""
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
        store = self._kube.create_configmap if stored is None else self._kube.replace_configmap
        try:
            self._retrier.call(budget, lambda timeout: store(updated, timeout))
        except (Conflict, AlreadyExists):
            return False
        except NotFound:
            return False  # deleted since our GET: the next attempt re-reads and creates it
        metrics.record_pool_size(pool, len(data), data_bytes(data))
        return True
