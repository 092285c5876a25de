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

    core = client.CoreV1Api(api_client)
    created = core.create_node(node)
    taints = [t for t in created.spec.taints or [] if t.key != NOT_READY_TAINT]
    if len(taints) == len(created.spec.taints or []):
        return created
    # A JSON merge patch replaces the list whole; resourceVersion guards against a racing writer.
    body = {
        "metadata": {"resourceVersion": created.metadata.resource_version},
        "spec": {"taints": [api_client.sanitize_for_serialization(t) for t in taints]},
    }
    return core.patch_node(created.metadata.name, body)
