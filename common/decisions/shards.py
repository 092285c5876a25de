"""Pools past one ConfigMap (docs/pools.md): which ConfigMap holds an identity. Pure: no I/O.

An identity is one Deployment of one namespace (all its slots) or one bare pod. Every entry of
an identity lives in one ConfigMap, its home, so planning a pod reads and writes one ConfigMap
under one resourceVersion guard, exactly as with a single ConfigMap.

A pool starts with its first ConfigMap only (the Go original's layout). When that one fills up
(SPLIT_AT_BYTES), a writer marks it `shards: N` in a guarded write; from then on:

- an identity that still has an entry in the first ConfigMap keeps it as home;
- any other identity's home is shard `1 + crc32(identity) % (N - 1)`.

Why this is race-safe: once the pool is split the first ConfigMap never gains an identity, so
"not in the first ConfigMap" stays true once read; and every decision "home = the first
ConfigMap" is checked by the guarded write to that same ConfigMap. A replica that planned there
on an old read gets a 409, re-reads, and moves on to the shard.
"""

from __future__ import annotations

from collections.abc import Mapping

from common.decisions.mutate import Intent
from common.naming import SHARDS_ANNOTATION, affinity_shard
from common.reservation import CONFIGMAP_DATA_LIMIT, decode_entries

# The first ConfigMap splits at 3/4 of the limit: the last quarter is room for the identities
# that stay there (new slots of its Deployments, re-created bare pods).
SPLIT_AT_BYTES = CONFIGMAP_DATA_LIMIT * 3 // 4
# ConfigMaps of a pool once it splits: the first plus 15 of ~3,500 entries each (1 MiB), room
# for 50,000 entries.
SHARDS = 16
MAX_SHARDS = 1024

Identity = tuple[str, str, str]  # ("deployment" | "pod", namespace, name)


def intent_identity(intent: Intent) -> Identity:
    if intent.deployment is not None:
        return ("deployment", intent.namespace, intent.deployment)
    return ("pod", intent.namespace, intent.pod_name)


def identities(data: Mapping[str, str]) -> frozenset[Identity]:
    """Identities with at least one well-formed entry in `data`."""
    reservations, _malformed = decode_entries(data)
    return frozenset(
        ("pod", r.namespace, r.pod) if r.bare else ("deployment", r.namespace, r.deployment)
        for r in reservations.values()
    )


def shard_count(annotations: Mapping[str, str]) -> int:
    """From the first ConfigMap's annotations; 1 (not split) when absent or not a count."""
    value = annotations.get(SHARDS_ANNOTATION, "")
    if value.isdigit() and 1 <= int(value) <= MAX_SHARDS:
        return int(value)
    return 1


def home_shard(intent: Intent, shards: int, in_first: frozenset[Identity]) -> int:
    """The shard that holds the intent's identity; `in_first` = identities(first ConfigMap)."""
    identity = intent_identity(intent)
    if shards <= 1 or identity in in_first:
        return 0
    return affinity_shard(intent.namespace, intent.deployment, intent.pod_name, shards)


def should_split(annotations: Mapping[str, str], data_bytes: int) -> bool:
    return shard_count(annotations) == 1 and data_bytes >= SPLIT_AT_BYTES
