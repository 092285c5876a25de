"""The reaper's sweep: release affinity reservations whose pod is gone (SPEC 8).

One sweep, with a request count that grows with pools and namespaces, never with entries
(SPEC 13): one LIST of the managed ConfigMaps, one pod LIST per namespace that an entry outside
the in-flight window names (shared by every pool), then at most one PUT per changed ConfigMap.
Each PUT carries the resourceVersion of the read it was judged from; a 409 sends us back to a
fresh GET and the same pure `judge`, with the same `now` and snapshots, so an entry mutate
re-claimed meanwhile (its claim is newer than `now`, hence in flight) is kept. That is also why
overlapping sweeps are safe: the loser re-judges and finds nothing left to do.

Transient failures (no answer, 429, 5xx) are retried through `common.retry`: a few times per
ConfigMap, per namespace LIST and for the ConfigMap LIST, within the sweep's budget. The
summary's `retries` and cocoon_webhook_api_retries_total{component="reaper"} say how many.

I/O goes through KubeApi only; every decision is `common.decisions.reap`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from common import metrics
from common.config import Settings
from common.decisions.reap import (
    Changes,
    Outcome,
    Presence,
    judge,
    needed_namespaces,
    unconfirmed_horizon,
)
from common.kube import ConfigMap, Conflict, KubeApi, KubeError, NotFound
from common.logs import get_logger
from common.naming import (
    AFFINITY_NAMESPACE,
    MALFORMED_SINCE_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    POOL_KEY,
)
from common.reservation import MalformedEntry, data_bytes, decode, read_entries
from common.retry import DeadlineExceeded, Retrier, Tries

MAX_ATTEMPTS = 5
# Transient failures retried per ConfigMap (its GETs and PUTs together) and per LIST.
TRANSIENT_RETRIES = 3
# The CronJob's tick waits 200 s for the reply (SPEC 12.6); pools not started by then are left
# for the next run and counted as errors, so the reply still arrives in time.
SWEEP_BUDGET_S = 200.0
# One API call; a LIST's pages share it. Generous: a sweep has minutes, an admission seconds.
CALL_TIMEOUT_S = 30.0
NAMESPACE_LIST_WORKERS = 8

_log = get_logger("reaper")


# --- one sweep -----------------------------------------------------------------------------------


@dataclass
class Summary:
    """The reply body (SPEC 8.1). `listed` is False when the ConfigMaps could not be listed."""

    pools: int = 0  # distinct pools, however many ConfigMaps each spans (docs/pools.md)
    checked: int = 0
    marked: int = 0
    cleared: int = 0
    released: int = 0  # entries removed, malformed ones included
    malformed: int = 0
    errors: int = 0
    retries: int = 0  # transient API failures retried (each one is not an error)
    dry_run: bool = False
    listed: bool = True

    @property
    def result(self) -> str:
        """The `result` label of cocoon_webhook_reaper_sweeps_total."""
        if not self.listed:
            return "error"
        return "partial" if self.errors else "success"

    def to_json(self) -> dict[str, Any]:
        return {
            "pools": self.pools,
            "checked": self.checked,
            "marked": self.marked,
            "cleared": self.cleared,
            "released": self.released,
            "malformed": self.malformed,
            "errors": self.errors,
            "retries": self.retries,
            "dryRun": self.dry_run,
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()


class _PodLists:
    """Pod presence per namespace, listed once and shared by every pool of the sweep.

    A snapshot older than `max_age_s` (half the in-flight window) is listed again before a
    judgement relies on it. A namespace whose LIST failed stays failed for the sweep: its entries
    are left alone, and the failure counts once, not once per pool.
    """

    def __init__(self, kube: KubeApi, max_age_s: float, calls: _Calls) -> None:
        self._kube = kube
        self._max_age_s = max_age_s
        self._calls = calls
        self._monotonic = calls.monotonic
        self._taken: dict[str, tuple[float, Presence]] = {}
        self.failed: dict[str, str] = {}  # namespace → error
        self.lists = 0
        self.retries = 0
        self._retries_lock = threading.Lock()

    def fresh(self, namespaces: set[str]) -> dict[str, Presence | None]:
        now = self._monotonic()
        stale = sorted(
            ns
            for ns in namespaces
            if ns not in self.failed
            and (ns not in self._taken or now - self._taken[ns][0] > self._max_age_s)
        )
        if len(stale) == 1:
            self._list(stale[0])
        elif stale:
            with ThreadPoolExecutor(min(NAMESPACE_LIST_WORKERS, len(stale)), "reap-list") as pool:
                list(pool.map(self._list, stale))
        result: dict[str, Presence | None] = {}
        for ns in namespaces:
            taken = self._taken.get(ns)
            result[ns] = None if taken is None or ns in self.failed else taken[1]
        return result

    def _list(self, namespace: str) -> None:
        # Stamped before the call: the snapshot is at least as old as the request.
        started = self._monotonic()
        self.lists += 1
        tries = self._calls.tries()
        try:
            items = self._calls.retrier.call(
                tries, lambda timeout: self._kube.list_pods(namespace, "", timeout)
            )
        except (KubeError, DeadlineExceeded) as exc:
            self.failed[namespace] = str(exc) or "sweep budget spent"
            _log.warning(
                "pod list failed; entries of the namespace left untouched",
                extra={"namespace": namespace, "error": str(exc)},
            )
            return
        finally:
            with self._retries_lock:  # namespaces are listed side by side
                self.retries += tries.spent
        self._taken[namespace] = (started, Presence.of(items))


@dataclass
class _PoolResult:
    checked: int = 0
    marked: int = 0
    cleared: int = 0
    released: int = 0
    malformed: int = 0
    errors: int = 0


@dataclass
class _Calls:
    """How a sweep calls the API: transient failures retried within the sweep's budget."""

    retrier: Retrier
    deadline: float
    monotonic: Callable[[], float]

    @classmethod
    def for_sweep(cls, started: float, monotonic: Callable[[], float]) -> _Calls:
        retrier = Retrier("reaper", longest_attempt=CALL_TIMEOUT_S, monotonic=monotonic)
        return cls(retrier, started + SWEEP_BUDGET_S, monotonic)

    def tries(self) -> Tries:
        return Tries(self.deadline, TRANSIENT_RETRIES)


def sweep(
    kube: KubeApi,
    settings: Settings,
    now: datetime,
    *,
    dry_run: bool = False,
    monotonic: Callable[[], float] = time.monotonic,
) -> Summary:
    """One sweep over every managed affinity ConfigMap (SPEC 8.2). Records the sweep metrics.

    `now` is taken before any LIST, which keeps every judgement conservative: a claim written
    after a snapshot was taken is newer than `now` and therefore in flight. Raises only on a bug;
    API failures end up in the summary.
    """
    started = monotonic()
    summary = Summary(dry_run=dry_run)
    result = "error"
    try:
        _sweep(kube, settings, now, summary, monotonic, started)
        result = summary.result
    finally:
        metrics.SWEEPS_TOTAL.labels(result=result).inc()
        metrics.SWEEP_DURATION.observe(monotonic() - started)
        if result == "success" and not dry_run:
            metrics.LAST_SUCCESSFUL_SWEEP.set_to_current_time()
    _log.info(
        "sweep done" if summary.listed else "sweep failed: configmaps not listed",
        extra={**summary.to_json(), "durationMs": round((monotonic() - started) * 1000, 3)},
    )
    return summary


def _sweep(
    kube: KubeApi,
    settings: Settings,
    now: datetime,
    summary: Summary,
    monotonic: Callable[[], float],
    started: float,
) -> None:
    calls = _Calls.for_sweep(started, monotonic)
    selector = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
    tries = calls.tries()
    try:
        found = calls.retrier.call(
            tries, lambda timeout: kube.list_configmaps(AFFINITY_NAMESPACE, selector, timeout)
        )
    except KubeError as exc:
        summary.listed = False
        summary.errors = 1
        _log.error("configmap list failed", extra={"error": str(exc)})
        return
    finally:
        summary.retries += tries.spent
    # The label, not the name or an entry's `pool` field, says which pool a ConfigMap holds.
    pools = sorted(
        ((cm.labels.get(POOL_KEY, ""), cm) for cm in found if cm.labels.get(POOL_KEY)),
        key=lambda item: (item[0], item[1].name),
    )
    summary.pools = len({pool for pool, _ in pools})  # pools, not ConfigMaps: a split pool is one
    window = timedelta(seconds=settings.inflight_window_s)
    snapshots = _PodLists(kube, settings.inflight_window_s / 2, calls)
    for index, (pool, configmap) in enumerate(pools):
        if monotonic() - started > SWEEP_BUDGET_S:
            left = len(pools) - index
            summary.errors += left
            _log.warning(
                "sweep budget spent; pools left for the next sweep",
                extra={"pools": left, "budgetS": SWEEP_BUDGET_S},
            )
            break
        tries = calls.tries()
        done = _sweep_pool(
            kube, calls, tries, settings, now, window, pool, configmap, snapshots, summary.dry_run
        )
        summary.retries += tries.spent
        summary.checked += done.checked
        summary.marked += done.marked
        summary.cleared += done.cleared
        summary.released += done.released
        summary.malformed += done.malformed
        summary.errors += done.errors
    summary.errors += len(snapshots.failed)
    summary.retries += snapshots.retries


def _sweep_pool(
    kube: KubeApi,
    calls: _Calls,
    tries: Tries,
    settings: Settings,
    now: datetime,
    window: timedelta,
    pool: str,
    stored: ConfigMap,
    snapshots: _PodLists,
    dry_run: bool,
) -> _PoolResult:
    """Judge one ConfigMap and write its changes in one guarded PUT, re-judging on conflict;
    transient failures of its GETs and PUTs draw on `tries`."""
    grace = timedelta(seconds=settings.reaper_grace_s)
    context = {"pool": pool, "configmap": stored.name}
    changes: Changes | None = None
    retried: tuple[ConfigMap, Mapping[str, str], Changes] | None = None
    for _ in range(MAX_ATTEMPTS):
        if retried is not None and _landed(retried[0], stored):
            # A retried PUT got a 409 because the first attempt had landed (its answer was
            # lost): count what it removed, or those releases would never be counted at all.
            update, before, landed = retried
            metrics.record_pool_size(pool, stored.name, len(update.data), data_bytes(update.data))
            return _finish(pool, before, landed, written=True)
        retried = None
        metrics.record_pool_size(pool, stored.name, len(stored.data), data_bytes(stored.data))
        entries = read_entries(stored.data)
        pods = snapshots.fresh(needed_namespaces(entries, now, window))
        annotation = stored.annotations.get(MALFORMED_SINCE_ANNOTATION)
        interval = timedelta(seconds=settings.reaper_interval_s)
        unconfirmed = unconfirmed_horizon(data_bytes(stored.data), window, interval)
        changes = judge(entries, annotation, pods, now, grace, window, unconfirmed)
        if dry_run or not changes.changed:
            return _finish(pool, stored.data, changes, written=not dry_run)
        data, annotations = changes.apply(stored.data, stored.annotations)
        update = ConfigMap(
            name=stored.name,
            namespace=stored.namespace,
            data=data,
            labels=stored.labels,
            annotations=annotations,
            resource_version=stored.resource_version,
        )
        puts = tries.spent
        try:
            calls.retrier.call(tries, partial(kube.replace_configmap, update))
        except Conflict:
            metrics.CONFLICTS_TOTAL.labels(pool=pool).inc()
            _log.debug("conflict; judging the fresh entries again", extra=context)
            if tries.spent > puts:  # the 409 answered a retry: the first try may have landed
                retried = (update, stored.data, changes)
        except NotFound:
            _log.info("configmap deleted during the sweep", extra=context)
            return _PoolResult()
        except (KubeError, DeadlineExceeded) as exc:
            _log.warning("configmap update failed", extra={**context, "error": _why(exc)})
            return _PoolResult(checked=len(changes.outcomes), errors=1)
        else:
            metrics.record_pool_size(pool, stored.name, len(data), data_bytes(data))
            return _finish(pool, stored.data, changes, written=True)
        try:
            stored = calls.retrier.call(
                tries, partial(kube.get_configmap, stored.namespace, stored.name)
            )
        except NotFound:
            _log.info("configmap deleted during the sweep", extra=context)
            return _PoolResult()
        except (KubeError, DeadlineExceeded) as exc:
            _log.warning("configmap read failed", extra={**context, "error": _why(exc)})
            return _PoolResult(checked=len(changes.outcomes), errors=1)
    _log.warning("configmap not updated: too many conflicts", extra=context)
    return _PoolResult(checked=len(changes.outcomes) if changes else 0, errors=1)


def _landed(update: ConfigMap, fresh: ConfigMap) -> bool:
    """Whether `fresh` is what `update` wrote (a later writer would have changed something)."""
    return fresh.data == update.data and fresh.annotations == update.annotations


def _why(exc: Exception) -> str:
    return "sweep budget spent" if isinstance(exc, DeadlineExceeded) else str(exc)


def _finish(pool: str, data: Mapping[str, str], changes: Changes, *, written: bool) -> _PoolResult:
    """Count and log a judgement that was written (or, on a dry run, would have been)."""
    released = changes.count(
        Outcome.RELEASED, Outcome.UNCONFIRMED_RELEASED, Outcome.MALFORMED_RELEASED
    )
    if written and released:
        metrics.RELEASES_TOTAL.labels(pool=pool).inc(released)
    verb = "released" if written else "would release (dry run)"
    for key, outcome in sorted(changes.outcomes.items()):
        if outcome in (Outcome.MALFORMED, Outcome.MALFORMED_RELEASED):
            _log.warning(
                f"malformed entry {verb}" if outcome is Outcome.MALFORMED_RELEASED
                else "malformed entry",
                extra={"pool": pool, "key": key, "error": changes.reasons.get(key, "")},
            )  # fmt: skip
        elif outcome in (Outcome.RELEASED, Outcome.UNCONFIRMED_RELEASED):
            never = {"neverConfirmed": True} if outcome is Outcome.UNCONFIRMED_RELEASED else {}
            _log.info(verb, extra={"pool": pool, "key": key, **_entry_context(data[key]), **never})
    return _PoolResult(
        checked=len(changes.outcomes),
        marked=changes.count(Outcome.MARKED),
        cleared=changes.count(Outcome.CLEARED),
        released=released,
        malformed=changes.count(Outcome.MALFORMED, Outcome.MALFORMED_RELEASED),
    )


def _entry_context(value: str) -> dict[str, Any]:
    try:
        entry = decode(value)
    except MalformedEntry:
        return {}
    return {
        "namespace": entry.namespace,
        "pod": entry.pod,
        "slot": entry.slot,
        "vmName": entry.vm_name,
        "node": entry.node,
    }
