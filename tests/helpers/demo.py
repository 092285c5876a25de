"""The demo objects the sandbox suggests and checks, and tests admit: a cocoon Deployment, one of
its pods as its ReplicaSet would make it, a CocoonSet the validator denies, a
CocoonHibernation."""

from __future__ import annotations

from typing import Any

TOLERATION_KEY = "virtual-kubelet.io/provider"
DEMO_HASH = "5d8c7b9f6"


def demo_deployment(replicas: int = 3) -> dict[str, Any]:
    labels = {"app": "demo"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": _pod_spec()},
        },
    }


def _pod_spec() -> dict[str, Any]:
    return {
        "containers": [{"name": "agent", "image": "ghcr.io/cocoonstack/agent:1"}],
        "tolerations": [{"key": TOLERATION_KEY, "operator": "Exists", "effect": "NoSchedule"}],
    }


def demo_pod() -> dict[str, Any]:
    """A pod as the ReplicaSet controller would create it (the emulator runs no controllers)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"demo-{DEMO_HASH}-",
            "namespace": "default",
            "labels": {"app": "demo"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"demo-{DEMO_HASH}",
                    "controller": True,
                    "uid": "0b7c5a8e-0000-4000-8000-000000000001",
                }
            ],
        },
        "spec": _pod_spec(),
    }


def invalid_cocoonset() -> dict[str, Any]:
    return {
        "apiVersion": "cocoonset.cocoonstack.io/v1",
        "kind": "CocoonSet",
        "metadata": {"name": "agents", "namespace": "default"},
        "spec": {"agent": {"image": "", "replicas": 2}},
    }


def hibernation(name: str, pod: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "cocoonset.cocoonstack.io/v1",
        "kind": "CocoonHibernation",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podRef": {"name": pod}, "desire": "Hibernate"},
    }
