"""Prometheus metrics (SPEC section 9). Names and labels are wire contracts: dashboards read them.

The first three metric names are the Go original's. Everything registers on the default
registry so `process_*`/`python_*` series come along for free.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from common.verdict import Decision

ADMISSION_TOTAL = Counter(
    "cocoon_webhook_admission_total",
    "Admission requests by handler and decision.",
    ["handler", "decision"],
)
ADMISSION_DURATION = Histogram(
    "cocoon_webhook_admission_duration_seconds",
    "Admission latency from receipt to reply.",
    ["handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
RESERVATIONS_TOTAL = Counter(
    "cocoon_webhook_affinity_reservations_total",
    "Reservations stored or confirmed by mutate.",
    ["pool"],
)
RELEASES_TOTAL = Counter(
    "cocoon_webhook_affinity_releases_total",
    "Affinity entries removed by the reaper.",
    ["pool"],
)
CONFLICTS_TOTAL = Counter(
    "cocoon_webhook_affinity_conflicts_total",
    "409 Conflict or AlreadyExists answers to affinity ConfigMap writes.",
    ["pool"],
)
API_RETRIES_TOTAL = Counter(
    "cocoon_webhook_api_retries_total",
    "Kubernetes API calls retried after a transient failure (cause: HTTP status or no_answer).",
    ["component", "cause"],
)
UNCONFIRMED_REFUSED_TOTAL = Counter(
    "cocoon_webhook_affinity_unconfirmed_refused_total",
    "Pods admitted unpatched because their namespace held too many unconfirmed claims.",
    ["pool"],
)
CONNECTIONS_CLOSED_TOTAL = Counter(
    "cocoon_webhook_connections_closed_total",
    "Connections the standalone server closed because they broke a bound.",
    ["bound"],  # head, body, idle, capacity
)
SWEEPS_TOTAL = Counter(
    "cocoon_webhook_reaper_sweeps_total",
    "Reaper sweeps by result.",
    ["result"],
)
SWEEP_DURATION = Histogram(
    "cocoon_webhook_reaper_sweep_duration_seconds",
    "Wall time of one reaper sweep.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 240),
)
# The reap function scales to zero between sweeps, and a fresh process's counter starts with its
# sweep already counted, which `increase()` cannot see; a timestamp survives in max_over_time.
LAST_SUCCESSFUL_SWEEP = Gauge(
    "cocoon_webhook_reaper_last_success_timestamp_seconds",
    "Unix time at which this process's last successful (not dry-run) sweep ended.",
)
CACHE_FALLBACKS_TOTAL = Counter(
    "cocoon_webhook_cache_fallbacks_total",
    "Admissions that read the API directly because a cache was not current.",
)
AFFINITY_ENTRIES = Gauge(
    "cocoon_webhook_affinity_entries",
    "Entries in one of the pool's affinity ConfigMaps at this process's last read.",
    ["pool", "configmap"],
)
AFFINITY_BYTES = Gauge(
    "cocoon_webhook_affinity_configmap_bytes",
    "Key plus value bytes of one of the pool's ConfigMaps' data at this process's last read.",
    ["pool", "configmap"],
)

# Warn before a pool's ConfigMap hits the API server's 1 MiB object limit, when writes would fail.
CONFIGMAP_WARN_BYTES = 838_861
_SIZE_WARN_EVERY_S = 60.0
_size_warned_at: dict[str, float] = {}
_size_lock = threading.Lock()
_log = logging.getLogger("cocoon_webhook.metrics")


@functools.cache
def _admission_children(handler: str, decision: Decision) -> tuple[Any, Any]:
    # Resolving label children costs more than the increment itself on this hot path.
    return (
        ADMISSION_TOTAL.labels(handler=handler, decision=decision.value),
        ADMISSION_DURATION.labels(handler=handler),
    )


def record_admission(handler: str, decision: Decision, elapsed_s: float) -> None:
    total, duration = _admission_children(handler, decision)
    total.inc()
    duration.observe(elapsed_s)


def record_pool_size(pool: str, configmap: str, entries: int, data_bytes: int) -> None:
    AFFINITY_ENTRIES.labels(pool=pool, configmap=configmap).set(entries)
    AFFINITY_BYTES.labels(pool=pool, configmap=configmap).set(data_bytes)
    if data_bytes < CONFIGMAP_WARN_BYTES:
        return
    now = time.monotonic()
    with _size_lock:
        last = _size_warned_at.get(configmap)
        if last is not None and now - last < _SIZE_WARN_EVERY_S:
            return
        _size_warned_at[configmap] = now
    _log.warning(
        "affinity configmap above 80% of the 1 MiB limit",
        extra={"pool": pool, "configmap": configmap, "entries": entries, "bytes": data_bytes},
    )


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
