"""Choosing a node for a cocoon pod that has no usable sticky node (SPEC 5.7). Pure.

The VM's disk lives on the node it first ran on, so a pick is close to permanent: we only choose
among nodes that can take the pod now, and spread by current load including reservations that
are admitted but not yet visible as pods, so a burst of replicas does not pile onto one node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from common.pod import NodePods, NodeView, Taint, Toleration, live_keys
from common.reservation import Reservation

# PreferNoSchedule is a hint to the scheduler; only these two keep a pod off a node.
BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """Kubernetes' ToleratesTaint: an empty effect or key matches any; Exists ignores the value."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    if toleration.operator == "Exists":
        return True
    if toleration.operator in ("", "Equal"):
        return toleration.value == taint.value
    return False


def schedulable(node: NodeView, tolerations: Sequence[Toleration]) -> bool:
    """Ready, not cordoned, not being deleted, and every blocking taint tolerated."""
    if node.ready != "True" or node.unschedulable or node.deleting:
        return False
    return all(
        any(tolerates(t, taint) for t in tolerations)
        for taint in node.taints
        if taint.effect in BLOCKING_EFFECTS
    )


def candidates(nodes: Iterable[NodeView], tolerations: Sequence[Toleration]) -> list[NodeView]:
    """The listed pool nodes a fresh pick may choose from, in list order."""
    return [node for node in nodes if schedulable(node, tolerations)]


def usage(
    node_names: Iterable[str],
    node_pods: Mapping[str, NodePods],
    reservations: Iterable[Reservation],
    now: datetime,
    window: timedelta,
) -> dict[str, int]:
    """Per node: its live pods (all namespaces) plus this pool's in-flight reservations on it
    whose pod is not among them yet (admitted, not yet created or not yet visible).

    `node_pods[name]` is the node's pod LIST; a node missing from it counts no pods.
    """
    in_flight = [r for r in reservations if r.node and r.in_flight(now, window)]
    counts: dict[str, int] = {}
    for name in node_names:
        live = live_keys(node_pods.get(name, ()))
        pending = sum(1 for r in in_flight if r.node == name and (r.namespace, r.pod) not in live)
        counts[name] = len(live) + pending
    return counts


def least_used(counts: Mapping[str, int]) -> str | None:
    """Lowest count; ties go to the byte-wise smallest name.

    Python compares str by code point, which orders like UTF-8 bytes, so no encoding is needed.
    """
    if not counts:
        return None
    return min(counts.items(), key=lambda item: (item[1], item[0]))[0]
