"""Cluster fixtures for tests against the emulator: cocoon nodes, pods, and the API server's
side of admission (applying a webhook's patch, then storing the pod)."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from tests.helpers import COCOON_TOLERATION, review

VK_TAINT = {"key": "virtual-kubelet.io/provider", "value": "cocoon", "effect": "NoSchedule"}
AFFINITY = ("cocoon-system", "cocoon-affinity-default")


def add_node(core: Any, name: str, pool: str | None = "default", *, ready: bool = True) -> None:
    labels = {"cocoonstack.io/pool": pool} if pool else {}
    core.create_node({"metadata": {"name": name, "labels": labels},
                      "spec": {"taints": [VK_TAINT] if pool else []}})  # fmt: skip
    status = "True" if ready else "False"
    core.patch_node_status(name, {"status": {"conditions": [{"type": "Ready", "status": status}]}})


def add_running_pod(core: Any, name: str, node: str, namespace: str = "default") -> None:
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    })  # fmt: skip


def cocoon_pod(
    *, name: str = "", rs: str | None = None, namespace: str = "ns", pool: str | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"namespace": namespace}
    if name:
        metadata["name"] = name
    elif rs:
        metadata["generateName"] = f"{rs}-"
    if rs:
        metadata["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": f"uid-{rs}"}
        ]
    if pool:
        metadata["labels"] = {"cocoonstack.io/pool": pool}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [{"name": "agent", "image": "agent:1"}],
                 "tolerations": [COCOON_TOLERATION]},
    }  # fmt: skip


def pod_review(pod: dict[str, Any], *, dry_run: bool = False, uid: str = "uid-1") -> dict:
    namespace = pod["metadata"]["namespace"]
    return review(pod, None, operation="CREATE", kind="Pod", group="", resource="pods",
                  namespace=namespace, name=pod["metadata"].get("name", ""), dry_run=dry_run,
                  uid=uid)  # fmt: skip


def apply_patch(obj: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """What the API server does with a mutating answer: JSON Patch `add` ops, in order."""
    patched = copy.deepcopy(obj)
    if "patch" not in response:
        return patched
    for op in json.loads(base64.b64decode(response["patch"])):
        assert op["op"] == "add"
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"][1:].split("/")
        ]
        target = patched
        for part in parents:
            target = target[part]
        target[last] = op["value"]
    return patched


def affinity_data(core: Any, name: str = AFFINITY[1]) -> dict[str, str]:
    from kubernetes.client.exceptions import ApiException

    try:
        return dict(core.read_namespaced_config_map(name, "cocoon-system").data or {})
    except ApiException as exc:
        if exc.status == 404:
            return {}
        raise
