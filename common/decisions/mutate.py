"""mutate (Pod CREATE): decide a stable VM name and a sticky node (SPEC 5). Pure: no I/O, no clock.

Three steps, each a function of plain data:

1. `plan` applies rows 1-8 of SPEC 5.1 to the review and the decoded Pod: a `Skip` (allow
   untouched) or an `Intent` to reserve. It costs no API call and runs once per admission, so a
   name it generates survives the store's conflict retries.
2. `plan_entry` turns an Intent plus the pool ConfigMap's data and cluster snapshots into the one
   entry to write (SPEC 5.6-5.8): a `Draft`, a `Failed` (row 10), or a `Need` for a snapshot it
   does not have yet. See its docstring for the protocol the store follows.
3. `patch_ops` builds the JSON Patch of SPEC 5.9 from the outcome.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from common.decisions import picker
from common.naming import (
    COCOONSET_KIND,
    MAX_KEY_LEN,
    VM_NAME_ANNOTATION_POINTER,
    bare_key,
    bare_vm_name,
    deployment_key,
    deployment_vm_name,
    generate_pod_name,
    is_configmap_key,
    is_valid_pool,
    owner_deployment,
)
from common.pod import (
    NodePods,
    NodeView,
    PodDecodeError,
    PodSummary,
    PodView,
    is_cocoon_pod,
    pool_of,
)
from common.reservation import (
    CONFIGMAP_DATA_LIMIT,
    Reservation,
    data_bytes,
    decode_entries,
    encode,
)
from common.verdict import (
    AUDIT_REASON,
    Decision,
    PatchOp,
    Verdict,
    allow,
    patched,
    quoted,
    warning,
)

# Row 10 reasons (SPEC 5.11), the `<reason>` of not_reserved_warning.
REASON_DEADLINE = "deadline exceeded"
REASON_CONFLICTS = "conflicts"
REASON_FULL = "configmap full"
REASON_KEY_HELD = "slot key held by another pod"
REASON_UNREACHABLE = "kubernetes API unreachable"
# Row 8's check uses slot 0; a Deployment whose key only overflows at a higher slot ends here.
REASON_KEY_TOO_LONG = "entry key too long"
# A namespace already holds AFFINITY_MAX_UNCONFIRMED_PER_NAMESPACE claims whose pods are not
# listed: more likely forged reviews or a runaway controller than a real burst.
REASON_UNCONFIRMED = "too many unconfirmed claims in namespace"
# Default bound; the setting overrides it.
MAX_UNCONFIRMED_PER_NAMESPACE = 1000


def reason_api_error(code: int) -> str:
    return f"kubernetes API error {code}"


def not_reserved_warning(reason: str) -> str:
    """Row 10: the pod runs, but without a stable VM name or sticky node."""
    return warning(f"VM name not reserved ({reason}); pod admitted without sticky placement")


def invalid_pool_warning(pool: str) -> str:
    return warning(f"VM name not reserved (invalid pool {quoted(pool)})")


# auditAnnotations keys of a placement (rules in common.verdict.AUDIT_REASON): the API server's
# audit log then answers "where did this VM go, and why" without the webhook's own logs.
AUDIT_VM_NAME = "vm-name"
AUDIT_NODE = "node"
AUDIT_SLOT = "slot"
AUDIT_POOL = "pool"
AUDIT_KEY = "key"

KEY_TOO_LONG_WARNING = warning("VM name not reserved (entry key too long)")
NO_NAMESPACE_WARNING = warning("VM name not reserved (request has no namespace)")


def invalid_key_warning(key: str) -> str:
    return warning(f"VM name not reserved (invalid entry key {quoted(key)})")


def no_node_warning(pool: str) -> str:
    return warning(f"no schedulable node in pool {quoted(pool)}; pod left to the scheduler")


def sticky_gone_warning(old: str, pool: str, new: str) -> str:
    where = f"pinned to {quoted(new)}" if new else "pod left to the scheduler"
    return warning(f"sticky node {quoted(old)} left pool {quoted(pool)}; {where}")


def sticky_kept_warning(node: str, state: Literal["cordoned", "NotReady"]) -> str:
    return warning(f"sticky node {quoted(node)} is {state}; kept because the VM disk lives there")


# --- rows 1-8 ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skip:
    """Allow without a patch. `reason` is for the debug log; `warning` goes to the user."""

    decision: Decision
    reason: str
    warning: str | None = None

    def verdict(self) -> Verdict:
        warnings = (self.warning,) if self.warning else ()
        if self.decision is Decision.ALLOW:
            return allow(self.decision, warnings)
        # Failing open leaves a pod without a VM name; the audit log says why.
        return replace(allow(self.decision, warnings), audit=((AUDIT_REASON, self.reason),))


@dataclass(frozen=True)
class Intent:
    """A cocoon pod to reserve for. `key` is set for bare pods only: a Deployment pod's key
    depends on the slot, which plan_entry chooses."""

    pod: PodView
    pool: str
    namespace: str
    pod_name: str
    generated: bool  # the mutator chose pod_name; it must be patched in
    deployment: str | None
    key: str | None

    @property
    def needs_live_pods(self) -> bool:
        """Deployment pods need the namespace's pod LIST before planning (slot holds)."""
        return self.deployment is not None

    @property
    def generated_name(self) -> str | None:
        return self.pod_name if self.generated else None


def plan(
    operation: str,
    kind: str,
    namespace: str,
    request_name: str,
    pod: PodView | PodDecodeError,
    rng: random.Random | None = None,
) -> Skip | Intent:
    """Rows 1-8 of SPEC 5.1, in order. `kind` is `request.kind.kind`; `namespace` and
    `request_name` come from the request, not the object (as the Go original)."""
    if operation != "CREATE":
        return Skip(Decision.ALLOW, f"operation {operation}")
    if kind != "Pod":
        return Skip(Decision.ALLOW, f"kind {kind}")
    if isinstance(pod, PodDecodeError):
        return Skip(Decision.ERROR, f"undecodable pod: {pod.reason}")
    if not is_cocoon_pod(pod):
        return Skip(Decision.ALLOW, "not a cocoon pod")
    if any(ref.kind == COCOONSET_KIND for ref in pod.owner_references):
        return Skip(Decision.ALLOW, "owned by a CocoonSet, which names its own VMs")
    if pod.node_name:
        return Skip(Decision.ALLOW, "already pinned to a node")

    name, generated = pod.name or request_name, False
    if not name:
        if not pod.generate_name:
            return Skip(Decision.ALLOW, "no name and no generateName; the API server rejects it")
        name, generated = generate_pod_name(pod.generate_name, rng), True

    pool = pool_of(pod)
    if not namespace:
        return Skip(Decision.AFFINITY_FAILED, "request has no namespace", NO_NAMESPACE_WARNING)
    if not is_valid_pool(pool):
        return Skip(Decision.AFFINITY_FAILED, f"invalid pool {pool!r}", invalid_pool_warning(pool))
    deployment = owner_deployment(pod.owner_references)
    if deployment is None:
        first_key = bare_key(namespace, name)
        key: str | None = first_key
    else:
        first_key, key = deployment_key(namespace, deployment, 0), None
    if len(first_key) > MAX_KEY_LEN:
        return Skip(Decision.AFFINITY_FAILED, "entry key too long", KEY_TOO_LONG_WARNING)
    if not is_configmap_key(first_key):
        # A name the API server never checks before admission (a pod's own, which it rejects
        # afterwards, or an ownerReference's, which it never checks): the ConfigMap write would
        # be refused, and with it every admission batched into the same write.
        return Skip(Decision.AFFINITY_FAILED, "invalid entry key", invalid_key_warning(first_key))
    return Intent(pod, pool, namespace, name, generated, deployment, key)


# --- the entry to write --------------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    """plan_entry cannot decide without more of the cluster: fetch this, then call it again."""

    live_pods: bool = False  # LIST the pods of intent.namespace (any phase)
    node_pods: tuple[str, ...] = ()  # LIST the live pods of each of these nodes


@dataclass(frozen=True)
class Failed:
    """Row 10: allow without a patch, with `warning`."""

    reason: str

    @property
    def warning(self) -> str:
        return not_reserved_warning(self.reason)

    def verdict(self, pool: str) -> Verdict:
        """Allow unpatched (fail open), the reason in the warning and in the audit log."""
        failed_open = allow(Decision.AFFINITY_FAILED, (self.warning,))
        return replace(failed_open, audit=((AUDIT_REASON, self.reason), (AUDIT_POOL, pool)))


@dataclass(frozen=True)
class Draft:
    """The reservation to store under `key`, replacing the values under `remove` (moved rows).

    `write` is False when the stored value already says this (a repeated admission inside the
    in-flight window); `reservation` is then the stored value.
    """

    key: str
    reservation: Reservation
    remove: tuple[str, ...]
    write: bool
    warnings: tuple[str, ...]

    def apply(self, data: Mapping[str, str]) -> dict[str, str]:
        """The ConfigMap data after this draft; other entries, malformed ones included, stay."""
        out = {k: v for k, v in data.items() if k not in self.remove}
        out[self.key] = encode(self.reservation)
        return out


@dataclass(frozen=True)
class _Target:
    """Where the pod's entry goes, before a node is placed."""

    key: str
    slot: int
    vm_name: str
    sticky: str
    remove: tuple[str, ...]


def plan_entry(
    intent: Intent,
    entries: Mapping[str, str],
    *,
    live_pods: Sequence[PodSummary] | None,
    nodes: Sequence[NodeView],
    node_pods: Mapping[str, NodePods],
    now: datetime,
    window: timedelta,
    max_unconfirmed: int = MAX_UNCONFIRMED_PER_NAMESPACE,
    other_claims: Iterable[Reservation] = (),
    namespace_elsewhere: Mapping[str, Reservation] | None = None,
) -> Draft | Failed | Need:
    """Plan the pool ConfigMap entry for `intent` (SPEC 5.6-5.8).

    Inputs are the ConfigMap's `data` (empty when it does not exist) and snapshots fetched once per
    admission: `live_pods`, the LIST of `intent.namespace`'s pods (None = not fetched); `nodes`,
    the pool's node LIST; `node_pods`, pod LISTs of nodes by name (missing = not fetched).

    Why a `Need` rather than callables or fetching everything up front: which snapshots are
    needed depends on the entries (a sticky node needs no per-node LISTs, SPEC 13's budget), and
    callables would put I/O and its errors inside this function. So the store loops:

        draft = plan_entry(...)
        while isinstance(draft, Need): fetch what it names (once, cached), call again

    A Need comes only for a snapshot not given yet, so the loop ends after at most two fetches.
    On a 409 the store re-plans with fresh `entries` and the same snapshots. Deployment pods
    always need `live_pods` (`intent.needs_live_pods`); fetch it before the first call to save
    a round. Malformed values are skipped here and left in place for the reaper.

    Forged or runaway reviews (claims whose pods never appear) are contained twice: a new claim
    in a namespace already holding `max_unconfirmed` claims with no listed pod fails (the
    namespace's LIST is needed only once it holds that many entries at all), and a pool short
    of room reclaims entries whose pods are known gone (`_reclaim`) before it says full.

    In a pool spread over several ConfigMaps (docs/pools.md), `entries` is the intent's home
    shard, which holds every entry of its identity; `other_claims` are the other shards'
    claims in flight, which only weigh in the least-used pick; `namespace_elsewhere` are the
    intent's namespace's entries in the other shards, which count against the unconfirmed
    bound (a pool-wide bound, as in one ConfigMap). The room `_reclaim` makes is the home's.
    """
    reservations, _malformed = decode_entries(entries)
    if intent.deployment is not None:
        if live_pods is None:
            return Need(live_pods=True)
        target: _Target | Failed | Need = _deployment_target(
            intent, intent.deployment, reservations, live_pods, now, window
        )
    else:
        target = _bare_target(intent, reservations, live_pods, now, window)
    if not isinstance(target, _Target):
        return target
    if len(target.key) > MAX_KEY_LEN:
        return Failed(REASON_KEY_TOO_LONG)

    if target.key not in reservations or reservations[target.key].pod != intent.pod_name:
        counted = {**namespace_elsewhere, **reservations} if namespace_elsewhere else reservations
        over = _over_unconfirmed_bound(intent, counted, live_pods, target.key,
                                       max_unconfirmed)  # fmt: skip
        if over is not None:
            return over

    claims = itertools.chain(reservations.values(), other_claims)
    placed = _place(intent, target.sticky, nodes, node_pods, claims, now, window)
    if isinstance(placed, Need):
        return placed
    node, warnings = placed

    planned = Reservation(
        pool=intent.pool,
        namespace=intent.namespace,
        deployment=intent.deployment or "",
        slot=target.slot,
        vm_name=target.vm_name,
        pod=intent.pod_name,
        node=node,
        updated_at=now,
    )
    stored = reservations.get(target.key)
    if (
        not target.remove
        and stored is not None
        and replace(stored, updated_at=now) == planned
        and stored.in_flight(now, window)
    ):
        return Draft(target.key, stored, (), write=False, warnings=warnings)
    draft = Draft(target.key, planned, target.remove, write=True, warnings=warnings)
    excess = data_bytes(draft.apply(entries)) - CONFIGMAP_DATA_LIMIT
    if excess > 0:
        if live_pods is None:
            return Need(live_pods=True)  # the namespace's own gone claims may make the room
        keep = {target.key, *target.remove}
        victims = _reclaim(excess, entries, reservations, keep, intent, live_pods, now, window)
        if victims is None:
            return Failed(REASON_FULL)
        draft = replace(draft, remove=(*target.remove, *victims))
    return draft


def _unconfirmed_in(
    namespace: str, reservations: Mapping[str, Reservation], live: set[str], carried: set[str]
) -> list[str]:
    """Keys of `namespace`'s entries whose pod is not listed (and not yet marked missing)."""
    return [
        key
        for key, r in reservations.items()
        if r.namespace == namespace
        and r.missing_since is None
        and r.pod not in live
        and r.vm_name not in carried
    ]


def _over_unconfirmed_bound(
    intent: Intent,
    reservations: Mapping[str, Reservation],
    live_pods: Sequence[PodSummary] | None,
    key: str,
    max_unconfirmed: int,
) -> Failed | Need | None:
    ns = intent.namespace
    entries = sum(1 for k, r in reservations.items() if r.namespace == ns and k != key)
    if entries < max_unconfirmed:
        return None
    if live_pods is None:
        return Need(live_pods=True)
    live = _live_names(live_pods, ns)
    carried = _carried_vm_names(live_pods, ns)
    unconfirmed = [k for k in _unconfirmed_in(ns, reservations, live, carried) if k != key]
    return Failed(REASON_UNCONFIRMED) if len(unconfirmed) >= max_unconfirmed else None


def _reclaim(
    excess: int,
    entries: Mapping[str, str],
    reservations: Mapping[str, Reservation],
    keep: set[str],
    intent: Intent,
    live_pods: Sequence[PodSummary] | None,
    now: datetime,
    window: timedelta,
) -> tuple[str, ...] | None:
    """Keys to remove so that `excess` bytes fit, or None when not enough can go.

    Only claims past the in-flight window whose pods are known gone: in the admitted pod's own
    namespace, those its LIST does not show; elsewhere, those the reaper marked missing. Claims
    whose pods never appeared go first (never listed, or marked missing by the first sweep to
    judge them), then the longest missing. The grace they lose only ever kept a sticky node for
    a pod that comes back.
    """
    ns = intent.namespace
    known = live_pods is not None
    live = _live_names(live_pods, ns)
    carried = _carried_vm_names(live_pods, ns)
    local_gone = set(_unconfirmed_in(ns, reservations, live, carried)) if known else set()

    def rank(key: str) -> tuple[float, float]:
        r = reservations[key]
        if r.missing_since is None:
            return (0.0, r.updated_at.timestamp())
        return ((r.missing_since - r.updated_at).total_seconds(), r.missing_since.timestamp())

    candidates = sorted(
        (
            key
            for key, r in reservations.items()
            if key not in keep
            and not r.in_flight(now, window)
            and (key in local_gone or r.missing_since is not None)
            and not (r.namespace == ns and (r.pod in live or r.vm_name in carried))
        ),
        key=rank,
    )
    victims: list[str] = []
    for key in candidates:
        if excess <= 0:
            break
        victims.append(key)
        excess -= data_bytes({key: entries[key]})
    return tuple(victims) if excess <= 0 else None


def _live_names(live_pods: Sequence[PodSummary] | None, namespace: str) -> set[str]:
    return {p.name for p in live_pods or () if p.namespace == namespace and p.live}


def _carried_vm_names(live_pods: Sequence[PodSummary] | None, namespace: str) -> set[str]:
    return {p.vm_name for p in live_pods or () if p.namespace == namespace and p.live and p.vm_name}


def _deployment_target(
    intent: Intent,
    deployment: str,
    reservations: Mapping[str, Reservation],
    live_pods: Sequence[PodSummary],
    now: datetime,
    window: timedelta,
) -> _Target:
    ns = intent.namespace
    live = _live_names(live_pods, ns)
    carried = _carried_vm_names(live_pods, ns)

    def held(r: Reservation) -> bool:
        # Live pods are known for this namespace only; a stray value from another namespace
        # under our key is protected by its claim alone.
        return r.in_flight(now, window) or (r.namespace == ns and r.pod in live)

    ours = {
        key: r
        for key, r in reservations.items()
        if not r.bare and r.namespace == ns and r.deployment == deployment
    }

    # Computed once: a slot-by-slot scan of every row would make a full pool quadratic.
    held_slots = {r.slot for r in ours.values() if held(r)}

    def slot_held(slot: int) -> bool:
        if slot in held_slots or deployment_vm_name(ns, deployment, slot) in carried:
            return True
        # A value of another identity under this slot's key (only a hand edit makes one) is
        # overwritten by a takeover, so it must not be a live or in-flight claim.
        key = deployment_key(ns, deployment, slot)
        occupant = reservations.get(key)
        return occupant is not None and occupant.canonical_key() != key and held(occupant)

    mine = sorted(r.slot for r in ours.values() if r.pod == intent.pod_name)
    if mine:
        slot = mine[0]  # re-admission of the same pod: idempotent
    else:
        slot = 0
        while slot_held(slot):
            slot += 1

    key = deployment_key(ns, deployment, slot)
    same_slot = sorted(k for k, r in ours.items() if r.slot == slot)
    source = key if key in same_slot else (same_slot[0] if same_slot else None)
    sticky = ours[source].node if source is not None else ""

    def removable(k: str, r: Reservation) -> bool:
        if k == key:
            return False
        if r.pod == intent.pod_name:
            # Another row naming this pod would keep a second slot held while the pod lives.
            return True
        # A row of this slot under a non-canonical key moves; a stale duplicate goes.
        return r.slot == slot and not held(r)

    remove = tuple(sorted(k for k, r in ours.items() if removable(k, r)))
    return _Target(key, slot, deployment_vm_name(ns, deployment, slot), sticky, remove)


def _bare_target(
    intent: Intent,
    reservations: Mapping[str, Reservation],
    live_pods: Sequence[PodSummary] | None,
    now: datetime,
    window: timedelta,
) -> _Target | Failed | Need:
    ns, name = intent.namespace, intent.pod_name
    key = intent.key if intent.key is not None else bare_key(ns, name)
    ours = sorted(
        k for k, r in reservations.items() if r.bare and (r.namespace, r.pod) == (ns, name)
    )
    source = key if key in ours else (ours[0] if ours else None)
    sticky = reservations[source].node if source is not None else ""

    occupant = reservations.get(key)
    if occupant is not None and source != key:
        # Another pod's value under our key: a Go-original `<ns>._pod.0` row for a pod named
        # `0`, or a hashed-key collision. Take it over only when its pod is gone.
        if occupant.in_flight(now, window):
            return Failed(REASON_KEY_HELD)
        if live_pods is None:
            return Need(live_pods=True)
        if occupant.namespace == ns and occupant.pod in _live_names(live_pods, ns):
            return Failed(REASON_KEY_HELD)
        if source is None:
            sticky = occupant.node
    remove = tuple(k for k in ours if k != key)
    return _Target(key, 0, bare_vm_name(ns, name), sticky, remove)


def _place(
    intent: Intent,
    sticky: str,
    nodes: Sequence[NodeView],
    node_pods: Mapping[str, NodePods],
    reservations: Iterable[Reservation],
    now: datetime,
    window: timedelta,
) -> tuple[str, tuple[str, ...]] | Need:
    """SPEC 5.7: keep a sticky node still in the pool, whatever its state; otherwise pick."""
    listed = {node.name: node for node in nodes}
    if sticky and sticky in listed:
        node = listed[sticky]
        # The VM's disk is on that node: waiting for it beats starting over elsewhere.
        kept: list[str] = []
        if node.unschedulable:
            kept.append(sticky_kept_warning(sticky, "cordoned"))
        if node.ready != "True":
            kept.append(sticky_kept_warning(sticky, "NotReady"))
        return sticky, tuple(kept)

    names = [node.name for node in picker.candidates(nodes, intent.pod.tolerations)]
    missing = tuple(name for name in names if name not in node_pods)
    if missing:
        return Need(node_pods=missing)
    counts = picker.usage(names, node_pods, reservations, now, window)
    picked = picker.least_used(counts) or ""
    if sticky:
        return picked, (sticky_gone_warning(sticky, intent.pool, picked),)
    if not picked:
        return picked, (no_node_warning(intent.pool),)
    return picked, ()


# --- the patch -----------------------------------------------------------------------------------


def patch_ops(
    pod: PodView, vm_name: str, node: str, generated_name: str | None
) -> tuple[PatchOp, ...]:
    """SPEC 5.9, in order. `add` on an existing member replaces it, so no `replace` is needed."""
    ops: list[PatchOp] = []
    if generated_name:
        ops.append(PatchOp("/metadata/name", generated_name))
    if not pod.annotations_present:
        # JSON Patch cannot add a member to a missing object; `{}` is present and kept.
        ops.append(PatchOp("/metadata/annotations", {}))
    ops.append(PatchOp(f"/metadata/annotations/{VM_NAME_ANNOTATION_POINTER}", vm_name))
    if node:
        ops.append(PatchOp("/spec/nodeName", node))
    return tuple(ops)


def reserved_verdict(intent: Intent, draft: Draft) -> Verdict:
    """Row 9: allow with the patch and the placement warnings."""
    reservation = draft.reservation
    ops = patch_ops(intent.pod, reservation.vm_name, reservation.node, intent.generated_name)
    audit = [
        (AUDIT_VM_NAME, reservation.vm_name),
        (AUDIT_POOL, intent.pool),
        (AUDIT_KEY, draft.key),
        (AUDIT_SLOT, str(reservation.slot)),
    ]
    if reservation.node:
        audit.append((AUDIT_NODE, reservation.node))
    return replace(patched(ops, draft.warnings), audit=tuple(audit))
