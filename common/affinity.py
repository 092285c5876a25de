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

Reads come from the watch-fed caches (`common.cache`) when the process has them and they are
current: the pool's nodes, the namespace's pods, the pods of each candidate node and the
ConfigMap itself, so an admission costs one request, the guarded write. A conflict re-reads
the ConfigMap directly (one GET) and re-plans. When a cache has been silent past its limit, the
admission reads everything directly, as without caches, and says so (log, metric).

A pool past one ConfigMap (docs/pools.md): each admission's batch is that of its identity's
home ConfigMap; a batch on the pool's first ConfigMap sends on the tickets whose home turned
out to be a shard.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from common import metrics
from common.cache import ClusterCaches
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
from common.decisions.shards import (
    SHARDS,
    Identity,
    home_shard,
    identities,
    shard_count,
    should_split,
)
from common.kube import AlreadyExists, ConfigMap, Conflict, KubeApi, KubeError, NotFound
from common.logs import get_logger
from common.naming import (
    AFFINITY_NAMESPACE,
    POOL_KEY,
    SHARDS_ANNOTATION,
    affinity_configmap_name,
    affinity_labels,
    affinity_shard_name,
)
from common.pod import NodePods, NodeView, PodSummary
from common.reservation import Reservation, data_bytes, decode_entries
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
# A fallback to direct reads is logged once per this many seconds, not once per admission.
FALLBACK_LOG_EVERY_S = 30.0


def _failure(exc: KubeError) -> Failed:
    if exc.status is None:
        return Failed(REASON_UNREACHABLE)
    return Failed(reason_api_error(exc.status))


@dataclass
class _ClusterReads:
    """Cluster state read at most once per admission, reused across conflict retries."""

    live_pods: Sequence[PodSummary] | None = None
    nodes: Sequence[NodeView] = ()
    node_pods: dict[str, NodePods] = field(default_factory=dict)


@dataclass
class _Ticket:
    """One admission waiting in its pool's batch."""

    intent: Intent
    snapshots: _ClusterReads
    deadline: float
    cached: bool = False  # reads come from the caches (else: direct API reads)
    home: str = ""  # the ConfigMap (shard) holding this identity's entries
    other_claims: Sequence[Reservation] = ()  # the pool's other shards' claims in flight
    # its namespace's entries in the pool's other shards (the unconfirmed bound is pool-wide)
    namespace_elsewhere: dict[str, Reservation] = field(default_factory=dict)
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


@dataclass(frozen=True)
class _Decoded:
    """One shard's reservations at one resourceVersion, as the other shards' admissions read
    them."""

    version: str
    newest: list[Reservation]  # newest claim first
    by_namespace: dict[str, dict[str, Reservation]]  # namespace -> key -> reservation

    @classmethod
    def of(cls, stored: ConfigMap) -> _Decoded:
        decoded = decode_entries(stored.data)[0]
        by_namespace: dict[str, dict[str, Reservation]] = {}
        for key, reservation in decoded.items():
            by_namespace.setdefault(reservation.namespace, {})[key] = reservation
        newest = sorted(decoded.values(), key=lambda r: r.updated_at, reverse=True)
        return cls(stored.resource_version, newest, by_namespace)


@dataclass
class _Pool:
    leader: threading.Lock = field(default_factory=threading.Lock)
    guard: threading.Lock = field(default_factory=threading.Lock)
    waiting: list[_Ticket] = field(default_factory=list)
    node_pods: dict[str, NodePods] = field(default_factory=dict)
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
        caches: ClusterCaches | None = None,
    ) -> None:
        self._kube = kube
        self._max_unconfirmed = max_unconfirmed
        self._caches = caches
        self._fallback_logged_at: float | None = None
        self._sleep = sleep
        self._window = window
        self._clock = clock
        self._monotonic = monotonic
        self._pools: dict[str, _Pool] = {}
        self._pools_guard = threading.Lock()
        self._decoded: dict[str, _Decoded] = {}
        self._first_identities: dict[str, tuple[str, frozenset[Identity]]] = {}
        self._node_lister = ThreadPoolExecutor(NODE_LIST_WORKERS, "node-pods")
        self._retrier = Retrier("mutate", monotonic=monotonic, sleep=sleep)

    def _pool(self, pool: str) -> _Pool:
        with self._pools_guard:
            return self._pools.setdefault(pool, _Pool())

    def reserve(self, intent: Intent, deadline: float, dry_run: bool) -> Draft | Failed:
        """Plan and (unless dry run) store the pod's entry, or say why not; never raises."""
        try:
            ticket = _Ticket(intent, _ClusterReads(), deadline, cached=self._caches_usable())
            self._snapshots(ticket)
            self._find_home(ticket)
            if dry_run:
                return self._dry_run(ticket)
            return self._reserve(ticket)
        except DeadlineExceeded:
            return Failed(REASON_DEADLINE)
        except KubeError as exc:
            if self._monotonic() >= deadline:
                return Failed(REASON_DEADLINE)
            return _failure(exc)

    def _caches_usable(self) -> bool:
        if self._caches is None:
            return False
        self._caches.ensure_started()
        stale = self._caches.stale()
        if not stale:
            return True
        metrics.CACHE_FALLBACKS_TOTAL.inc()
        now = self._monotonic()
        if (
            self._fallback_logged_at is None
            or now - self._fallback_logged_at > FALLBACK_LOG_EVERY_S
        ):
            self._fallback_logged_at = now
            _log.warning(
                "caches not current; reading from the API directly",
                extra={"caches": ",".join(stale), "limitS": self._caches.max_silence_s},
            )
        return False

    def _snapshots(self, ticket: _Ticket) -> None:
        # Read before joining the batch, so admissions overlap their LISTs and serialise only
        # their read-plan-write.
        intent = ticket.intent
        if ticket.cached:
            assert self._caches is not None
            ticket.snapshots.nodes = self._caches.nodes.in_pool(intent.pool)
        else:
            ticket.snapshots.nodes = self._retrier.call(
                ticket, lambda timeout: self._kube.list_nodes(f"{POOL_KEY}={intent.pool}", timeout)
            )
        if intent.needs_live_pods:
            ticket.snapshots.live_pods = self._namespace_pods(intent.namespace, ticket)

    def _find_home(self, ticket: _Ticket) -> None:
        """Which of the pool's ConfigMaps holds this identity (common.decisions.shards), from
        the cached first ConfigMap. Without caches the pool's first ConfigMap is tried first:
        its batch reads it anyway and sends the ticket on if its home is a shard."""
        intent = ticket.intent
        ticket.home = affinity_configmap_name(intent.pool)
        if not ticket.cached:
            return
        assert self._caches is not None
        first = self._caches.configmaps.get(ticket.home)
        shards = shard_count(first.annotations) if first is not None else 1
        if shards == 1 or first is None:
            return
        shard = home_shard(intent, shards, self._identities(first))
        ticket.home = affinity_shard_name(intent.pool, shard)
        self._other_shards(ticket, shards)

    def _identities(self, first: ConfigMap) -> frozenset[Identity]:
        with self._pools_guard:
            memo = self._first_identities.get(first.name)
        if memo is None or memo[0] != first.resource_version:
            memo = (first.resource_version, identities(first.data))
            with self._pools_guard:
                self._first_identities[first.name] = memo
        return memo[1]

    def _other_shards(self, ticket: _Ticket, shards: int) -> None:
        """From the pool's other shards: the claims still in flight (all the picker counts of
        them) and the entries of the ticket's namespace (for the unconfirmed bound). Each shard
        is decoded, ordered newest first and grouped by namespace once per resourceVersion, so
        this costs the claims in flight and the namespace's entries, not the pool's size."""
        assert self._caches is not None
        intent = ticket.intent
        now = self._clock()
        claims: list[Reservation] = []
        for shard in range(shards):
            name = affinity_shard_name(intent.pool, shard)
            if name == ticket.home:
                continue
            stored = self._caches.configmaps.get(name)
            if stored is None:
                continue
            with self._pools_guard:
                memo = self._decoded.get(name)
            if memo is None or memo.version != stored.resource_version:
                memo = _Decoded.of(stored)
                with self._pools_guard:
                    self._decoded[name] = memo
            claims.extend(
                itertools.takewhile(lambda r: r.in_flight(now, self._window), memo.newest)
            )
            ticket.namespace_elsewhere.update(memo.by_namespace.get(intent.namespace, {}))
        ticket.other_claims = claims

    def _dry_run(self, ticket: _Ticket) -> Draft | Failed:
        """The same plan, from the same entries, with nothing written and no batch joined."""
        stored = self._read(ticket.home, ticket, ticket.cached)
        pool = ticket.intent.pool
        if ticket.home == affinity_configmap_name(pool):
            # Read directly, the home is not known yet: as a batch would (`_move_out`), go on
            # to the identity's shard, or the plan would miss its entries there.
            if stored is not None:
                shards = shard_count(stored.annotations)
                shard = home_shard(ticket.intent, shards, self._identities(stored))
            elif self._shards_left(pool, ticket, ticket.cached):
                shard = home_shard(ticket.intent, SHARDS, frozenset())
            else:
                shard = 0
            if shard:
                ticket.home = affinity_shard_name(pool, shard)
                stored = self._read(ticket.home, ticket, ticket.cached)
        return self._plan(ticket, stored.data if stored else {})

    def _reserve(self, ticket: _Ticket) -> Draft | Failed:
        while True:
            home = ticket.home
            pool = self._pool(home)
            with pool.guard:
                pool.waiting.append(ticket)
            if not pool.leader.acquire(timeout=max(ticket.deadline - self._monotonic(), 0)):
                with pool.guard:
                    ticket.abandoned = ticket.result is None
                return ticket.result or Failed(REASON_DEADLINE)
            try:
                if ticket.result is None and ticket.home == home:
                    # No earlier leader resolved it: lead a batch ourselves.
                    self._lead(ticket.intent.pool, home, ticket)
            finally:
                pool.leader.release()
            if ticket.result is not None:
                return ticket.result
            # A leader found its identity no longer in the pool's first ConfigMap (the pool
            # split meanwhile, or the reaper released it): queue at its shard instead.

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

    def _lead(self, pool: str, name: str, own: _Ticket) -> None:
        """Plan the waiting tickets of ConfigMap `name` against its evolving entries and store
        them in one write, until `own` has its answer."""
        state = self._pool(name)
        pending = self._take_waiting(name)
        if self._monotonic() - state.node_pods_at > NODE_PODS_TTL_S:
            state.node_pods = {}
        node_pods = state.node_pods
        node_pods_before = len(node_pods)
        # The first round plans on the cached ConfigMap; after a conflict it is known stale.
        cached = all(t.cached for t in pending)
        try:
            while own.result is None and own.home == name:
                pending = self._expire(pending)
                if not pending:
                    return
                stored = self._read(name, _Batch(pending), cached)
                first = name == affinity_configmap_name(pool)
                if first and stored is None and self._shards_left(pool, _Batch(pending), cached):
                    self._mark_split(pool, _Batch(pending))
                    cached = False
                    continue  # re-read: the marked first ConfigMap sends tickets to shards
                cached = False
                if first and stored is not None:
                    if should_split(stored.annotations, data_bytes(stored.data)):
                        self._split(pool, stored, _Batch(pending))
                        continue  # re-read: planned on the split layout, or lost a race
                    pending = self._move_out(pool, stored, pending)
                    if not pending:
                        return
                entries = dict(stored.data) if stored else {}
                metrics.record_pool_size(pool, name, len(entries), data_bytes(entries))
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
                pending = [t for t, _ in to_write if t.result is None] + self._take_waiting(name)
        except (KubeError, DeadlineExceeded) as exc:
            failure = _failure(exc) if isinstance(exc, KubeError) else Failed(REASON_DEADLINE)
            for ticket in pending:
                if ticket.result is None:
                    late = self._monotonic() >= ticket.deadline
                    ticket.result = Failed(REASON_DEADLINE) if late else failure
        finally:
            if len(node_pods) > node_pods_before and node_pods_before == 0:
                state.node_pods_at = self._monotonic()
            self._hand_back(name, [t for t in pending if t.result is None])

    def _move_out(self, pool: str, first: ConfigMap, tickets: list[_Ticket]) -> list[_Ticket]:
        """Send tickets whose identity's home is no longer the pool's first ConfigMap to their
        shard; their threads queue there. The rest stay."""
        shards = shard_count(first.annotations)
        if shards == 1:
            return tickets
        in_first = self._identities(first)
        staying = []
        for ticket in tickets:
            shard = home_shard(ticket.intent, shards, in_first)
            if shard == 0:
                staying.append(ticket)
            else:
                ticket.home = affinity_shard_name(pool, shard)
        return staying

    def _split(self, pool: str, first: ConfigMap, budget: Budget) -> None:
        """Mark the pool's first ConfigMap as split into SHARDS (a guarded write of the same
        data). Losing the race is fine: the caller re-reads either way."""
        marked = ConfigMap(
            name=first.name,
            namespace=first.namespace,
            data=first.data,
            labels={**first.labels, **affinity_labels(pool)},
            annotations={**first.annotations, SHARDS_ANNOTATION: str(SHARDS)},
            resource_version=first.resource_version,
        )
        try:
            written = self._retrier.call(
                budget, lambda timeout: self._kube.replace_configmap(marked, timeout)
            )
        except (Conflict, NotFound):
            return
        _log.info("pool split over several configmaps", extra={"pool": pool, "shards": SHARDS})
        if self._caches is not None:
            self._caches.configmaps.remember(written)

    def _shards_left(self, pool: str, budget: Budget, cached: bool) -> bool:
        """Whether the pool has shards although its first ConfigMap is missing (deleted, with
        its split mark). Asked only when the first ConfigMap is missing: of the cache when it
        said so (no request), else of the API (one LIST, once per new pool)."""
        names = [affinity_shard_name(pool, shard) for shard in range(1, SHARDS)]
        if cached:
            assert self._caches is not None
            return any(self._caches.configmaps.get(name) is not None for name in names)
        selector = ",".join(f"{k}={v}" for k, v in affinity_labels(pool).items())
        found = self._retrier.call(
            budget,
            lambda timeout: self._kube.list_configmaps(AFFINITY_NAMESPACE, selector, timeout),
        )
        return any(configmap.name in names for configmap in found)

    def _mark_split(self, pool: str, budget: Budget) -> None:
        """Create the pool's first ConfigMap again, empty and marked split: every identity of
        a shard keeps its home there. Another replica creating it first is fine: the caller
        re-reads either way."""
        marked = ConfigMap(
            name=affinity_configmap_name(pool),
            namespace=AFFINITY_NAMESPACE,
            labels=affinity_labels(pool),
            annotations={SHARDS_ANNOTATION: str(SHARDS)},
        )
        try:
            written = self._retrier.call(
                budget, lambda timeout: self._kube.create_configmap(marked, timeout)
            )
        except AlreadyExists:
            return
        _log.warning(
            "first configmap of a split pool was missing; created it again, marked split",
            extra={"pool": pool, "shards": SHARDS},
        )
        if self._caches is not None:
            self._caches.configmaps.remember(written)

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

    def _read(self, name: str, budget: Budget, cached: bool) -> ConfigMap | None:
        if cached:
            assert self._caches is not None
            return self._caches.configmaps.get(name)
        return self._get(name, budget)

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
                other_claims=ticket.other_claims,
                namespace_elsewhere=ticket.namespace_elsewhere,
            )
            if not isinstance(result, Need):
                return result
            if result.live_pods:
                snapshots.live_pods = self._namespace_pods(ticket.intent.namespace, ticket)
            if result.node_pods:
                fetched = self._pods_on_nodes(result.node_pods, ticket)
                snapshots.node_pods.update(fetched)

    def _namespace_pods(self, namespace: str, ticket: _Ticket) -> list[PodSummary]:
        if ticket.cached:
            assert self._caches is not None
            return self._caches.pods.in_namespace(namespace)
        budget: Budget = ticket
        return self._retrier.call(
            budget, lambda timeout: self._kube.list_pods(namespace, "", timeout)
        )

    def _pods_on_nodes(self, nodes: Sequence[str], ticket: _Ticket) -> dict[str, NodePods]:
        if ticket.cached:
            assert self._caches is not None
            return {node: self._caches.pods.live_keys_on(node) for node in nodes}
        budget: Budget = ticket

        def live_pods_on(node: str) -> Sequence[PodSummary]:
            selector = f"spec.nodeName={node},status.phase!=Succeeded,status.phase!=Failed"
            return self._retrier.call(
                budget, lambda timeout: self._kube.list_pods(None, selector, timeout)
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
            written = self._retrier.call(budget, lambda timeout: store(updated, timeout))
        except (Conflict, AlreadyExists):
            return False
        except NotFound:
            # Deleted since our read (perhaps while cached): the next attempt re-reads it
            # directly and creates it.
            if self._caches is not None:
                self._caches.configmaps.forget(name)
            return False
        if self._caches is not None:
            # The next admission plans on our write without waiting for its watch event.
            self._caches.configmaps.remember(written)
        metrics.record_pool_size(pool, name, len(data), data_bytes(data))
        return True
