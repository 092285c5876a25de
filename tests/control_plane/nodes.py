"""Nodes on a control plane without kubelets.

The API server's TaintNodesByCondition admission gives every new Node the
`node.kubernetes.io/not-ready:NoSchedule` taint; the node lifecycle controller lifts it once the
kubelet reports Ready. No kubelet and no lifecycle controller run here (they would mark every
node NotReady), so `add_ready_node` lifts it itself after creating a Node whose status says Ready.
"""

from __future__ import annotations

from typing import Any

NOT_READY_TAINT = "node.kubernetes.io/not-ready"


def add_ready_node(api_client: Any, node: dict[str, Any]) -> Any:
    """Create `node` (its status included, as Node creation keeps it) and drop the not-ready
    taint admission added; returns the stored Node."""
    from kubernetes import client

    return _without_not_ready_taint(api_client, client.CoreV1Api(api_client).create_node(node))


def lift_not_ready_taint(api_client: Any, name: str) -> Any:
    """Drop the not-ready taint from a Node created otherwise; returns the stored Node."""
    from kubernetes import client

    return _without_not_ready_taint(api_client, client.CoreV1Api(api_client).read_node(name))


def _without_not_ready_taint(api_client: Any, stored: Any) -> Any:
    from kubernetes import client

    taints = [t for t in stored.spec.taints or [] if t.key != NOT_READY_TAINT]
    if len(taints) == len(stored.spec.taints or []):
        return stored
    # A JSON merge patch replaces the list whole; resourceVersion guards against a racing writer.
    body = {
        "metadata": {"resourceVersion": stored.metadata.resource_version},
        "spec": {"taints": [api_client.sanitize_for_serialization(t) for t in taints]},
    }
    return client.CoreV1Api(api_client).patch_node(stored.metadata.name, body)
