"""Wire names shared with the operator, vk-cocoon and the Go original, and the functions that
build them.

Every string here is a contract (SPEC section 2): other cocoonstack components parse VM names and
read the affinity ConfigMaps, so formats stay byte-identical to the Go original, ambiguities
included (SPEC 15).
"""

from __future__ import annotations

import hashlib
import random
import re
import zlib
from collections.abc import Iterable
from typing import Protocol

from common.gocompat import is_dns1123_subdomain

# A pod is a cocoon pod when it tolerates this key; operator, value and effect do not matter.
TOLERATION_KEY = "virtual-kubelet.io/provider"

# Owner kinds compared case-sensitively, apiVersion ignored, as the Go original does.
COCOONSET_KIND = "CocoonSet"
REPLICASET_KIND = "ReplicaSet"

POOL_KEY = "cocoonstack.io/pool"
DEFAULT_POOL = "default"

VM_NAME_ANNOTATION = "vm.cocoonstack.io/name"
# RFC 6901: `/` inside a JSON-Pointer token is written `~1`.
VM_NAME_ANNOTATION_POINTER = "vm.cocoonstack.io~1name"

AFFINITY_NAMESPACE = "cocoon-system"
AFFINITY_NAME_PREFIX = "cocoon-affinity-"
AFFINITY_SHARD_PREFIX = "cocoon-affinity."
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "cocoon-webhook"
# On an affinity ConfigMap: a JSON object, data key → RFC 3339 time the reaper first found the
# value malformed. Malformed values have no field to carry the mark, so it lives beside them.
# On a pool's first ConfigMap: how many ConfigMaps the pool's entries are spread over. Absent on
# a ConfigMap the Go original (or a version before sharding) created: that pool keeps one.
SHARDS_ANNOTATION = "cocoonstack.io/affinity-shards"
MALFORMED_SINCE_ANNOTATION = "cocoonstack.io/malformed-since"

# ConfigMap data keys are limited to 253 characters by the API server.
MAX_KEY_LEN = 253
# Bare-pod keys use `_pod` where a Deployment name would go: Deployment names are DNS-1123
# subdomains and cannot contain `_`, so the two key families never clash.
BARE_SEGMENT = "_pod"

# The API server's generateName rule (apiserver/pkg/storage/names): 63 - 5 characters of prefix,
# then five from an alphabet without vowels (no accidental words) or 0/1/3 (no look-alikes).
GENERATED_PREFIX_LEN = 58
GENERATED_SUFFIX_LEN = 5
GENERATED_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

# IsConfigMapKey (k8s.io/apimachinery): these characters, and not `.`, `..` or `..`-prefixed.
_CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_MAX_LABEL_VALUE_LEN = 63
_HASH_HEX_LEN = 16

# SystemRandom is thread-safe and needs no seeding; names must not clash, they need not be secret.
_SYSTEM_RNG = random.SystemRandom()


class OwnerRef(Protocol):
    """What owner_deployment reads of an ownerReference (satisfied by common.pod.OwnerReference)."""

    @property
    def kind(self) -> str: ...

    @property
    def name(self) -> str: ...


def affinity_configmap_name(pool: str) -> str:
    """The pool's ConfigMap name; the pool is appended verbatim, so check is_valid_pool first."""
    return AFFINITY_NAME_PREFIX + pool


def affinity_shard_name(pool: str, shard: int) -> str:
    """Shard 0 is the pool's first ConfigMap, under the Go original's name; shard k > 0 is
    `cocoon-affinity.<pool>.<k>` (see docs/pools.md). Not `cocoon-affinity-<pool>-<k>`: that
    is the first ConfigMap of pool `<pool>-<k>`, and two pools would share it. A valid pool
    ends in a letter or digit, so the last dot separates the shard and no two names meet."""
    if shard == 0:
        return affinity_configmap_name(pool)
    return f"{AFFINITY_SHARD_PREFIX}{pool}.{shard}"


def affinity_shard(namespace: str, deployment: str | None, pod: str, shards: int) -> int:
    """The shard of an identity in a split pool: every entry of one Deployment (all its
    slots), or of one bare pod, hashes to the same shard, so planning one pod reads and writes
    one ConfigMap. Never 0: the first ConfigMap only keeps what it held when the pool split.

    CRC-32 of `<ns>.<deployment>` or `<ns>._pod.<pod>`: stable across processes and versions
    (unlike Python's salted hash()), and any even spread will do.
    """
    if shards <= 1:
        return 0
    identity = f"{namespace}.{deployment}" if deployment is not None else f"{namespace}._pod.{pod}"
    return 1 + zlib.crc32(identity.encode("utf-8")) % (shards - 1)


def affinity_labels(pool: str) -> dict[str, str]:
    """Labels every write (re)sets: the reaper finds ConfigMaps and their pool only by them."""
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, POOL_KEY: pool}


def is_valid_pool(pool: str) -> bool:
    """A pool must be a label value (nodes are selected by it) and name a valid ConfigMap."""
    if len(pool) > _MAX_LABEL_VALUE_LEN or not _LABEL_VALUE.fullmatch(pool):
        return False
    name = affinity_configmap_name(pool)
    return is_dns1123_subdomain(name)


def is_configmap_key(key: str) -> bool:
    """Whether the API server accepts `key` as a ConfigMap data key (its length aside)."""
    return _CONFIGMAP_KEY.fullmatch(key) is not None and not key.startswith("..") and key != "."


def deployment_key(namespace: str, deployment: str, slot: int) -> str:
    """`<ns>.<deploy>.<slot>`, the Go original's key.

    ConfigMap keys allow only `[-._a-zA-Z0-9]`, so `/` is out; `.` works because a namespace
    (a DNS-1123 label) never contains one. Deployment names may, so keys are never parsed back:
    entries are identified by their value (SPEC 5.4.4).
    """
    return f"{namespace}.{deployment}.{slot}"


def deployment_vm_name(namespace: str, deployment: str, slot: int) -> str:
    return f"vk-{namespace}-{deployment}-{slot}"


def bare_key(namespace: str, pod: str) -> str:
    """`<ns>._pod.<pod>`, or a hashed form of exactly MAX_KEY_LEN characters when that is too long.

    The hash keeps long names that share a prefix apart; the readable head keeps the key greppable.
    """
    prefix = f"{namespace}.{BARE_SEGMENT}."
    key = prefix + pod
    if len(key) <= MAX_KEY_LEN:
        return key
    digest = hashlib.sha256(pod.encode("utf-8")).hexdigest()[:_HASH_HEX_LEN]
    head_len = max(0, MAX_KEY_LEN - len(prefix) - 1 - _HASH_HEX_LEN)
    return f"{prefix}{pod[:head_len]}-{digest}"


def bare_vm_name(namespace: str, pod: str) -> str:
    return f"vk-{namespace}-{pod}"


def owner_deployment(owner_refs: Iterable[OwnerRef]) -> str | None:
    """The Deployment behind the first ReplicaSet owner with a `-` after its first character.

    A Deployment's ReplicaSet is named `<deployment>-<pod-template-hash>`; the hash is not checked
    (as the Go original), so `my-rs` gives `my` and `frontend` gives no Deployment (a bare pod).
    """
    for ref in owner_refs:
        if ref.kind != REPLICASET_KIND:
            continue
        cut = ref.name.rfind("-")
        if cut > 0:
            return ref.name[:cut]
    return None


def generate_pod_name(generate_name: str, rng: random.Random | None = None) -> str:
    """Name a generateName pod the way the API server would.

    The mutator names the pod itself because the API server only generates a name after
    admission, and the reservation must record the name the pod will really have (SPEC 5.4.1);
    the API server keeps a name that is already set.
    """
    rng = rng or _SYSTEM_RNG
    suffix = "".join(rng.choice(GENERATED_ALPHABET) for _ in range(GENERATED_SUFFIX_LEN))
    return generate_name[:GENERATED_PREFIX_LEN] + suffix
