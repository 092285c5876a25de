"""Named starting states: `none` (empty), `namespaces` (default, cocoon-system), `sandbox`
(namespaces, the CocoonSet and CocoonHibernation CRDs, cocoon nodes).

Seeds are created through the REST layer, so they get the same defaults and validation as any
client's objects.
"""

from __future__ import annotations

from typing import Any

from tests.kube_emulator.rest import Api

COCOON_GROUP = "cocoonset.cocoonstack.io"
TOLERATION_KEY = "virtual-kubelet.io/provider"
POOL_LABEL = "cocoonstack.io/pool"

_STRING = {"type": "string"}
_INT = {"type": "integer"}
_RESOURCES = {
    "type": "object",
    "properties": {
        "limits": {"type": "object", "additionalProperties": {"x-kubernetes-int-or-string": True}},
        "requests": {
            "type": "object",
            "additionalProperties": {"x-kubernetes-int-or-string": True},
        },
    },
}
_TOOLBOX = {
    "type": "object",
    # newer operator versions add fields (backend, connType, …): kept, not typed here
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "name": _STRING,
        "image": _STRING,
        "mode": _STRING,
        "os": _STRING,
        "staticIP": _STRING,
        "staticVMID": _STRING,
        "resources": _RESOURCES,
    },
}


def _cocoon_crd(
    kind: str, short_names: list[str], spec: dict[str, Any], status: dict[str, Any]
) -> dict[str, Any]:
    """A namespaced cocoonset.cocoonstack.io/v1 CRD with a status subresource, as the operator's."""
    singular = kind.lower()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{singular}s.{COCOON_GROUP}"},
        "spec": {
            "group": COCOON_GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": f"{singular}s",
                "singular": singular,
                "shortNames": short_names,
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "apiVersion": _STRING,
                                "kind": _STRING,
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


COCOONSET_CRD = _cocoon_crd(
    "CocoonSet",
    ["cs"],
    spec={
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            "agent": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {
                    "image": _STRING,
                    "replicas": _INT,
                    "mode": _STRING,
                    "os": _STRING,
                    "vncPort": _INT,
                    "resources": _RESOURCES,
                    "storage": {"x-kubernetes-int-or-string": True},
                },
            },
            "toolboxes": {"type": "array", "items": _TOOLBOX},
            "snapshotPolicy": _STRING,
            "suspend": {"type": "boolean"},
            "nodePool": _STRING,
            "network": _STRING,
            "serviceAccountName": _STRING,
        },
    },
    status={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
)

# As cocoon-operator ships it (config/crd/bases/cocoonset.cocoonstack.io_cocoonhibernations.yaml),
# without its descriptions and conditions schema. The emulator does not run the CEL rule; a real
# API server does.
COCOONHIBERNATION_CRD = _cocoon_crd(
    "CocoonHibernation",
    ["ch"],
    spec={
        "type": "object",
        "required": ["desire", "podRef"],
        "properties": {
            "desire": {"type": "string", "enum": ["Hibernate", "Wake"]},
            "podRef": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string", "minLength": 1}},
                "x-kubernetes-validations": [
                    {"rule": "self == oldSelf", "message": "spec.podRef is immutable"}
                ],
            },
        },
    },
    status={
        "type": "object",
        "properties": {
            "phase": _STRING,
            "vmName": _STRING,
            "observedGeneration": {"type": "integer", "format": "int64"},
        },
        "x-kubernetes-preserve-unknown-fields": True,
    },
)


def node(name: str, pool: str | None, *, tainted: bool) -> dict[str, Any]:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
    }
    if pool is not None:
        labels[POOL_LABEL] = pool
        labels["type"] = "virtual-kubelet"
    spec: dict[str, Any] = {}
    if tainted:
        spec["taints"] = [{"key": TOLERATION_KEY, "value": "cocoon", "effect": "NoSchedule"}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {
            "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                }
            ],
            "addresses": [{"type": "Hostname", "address": name}],
        },
    }


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def sandbox_nodes() -> list[dict[str, Any]]:
    """Two cocoon nodes in pool `default`, one in `gpu`, one ordinary worker."""
    return [
        node("cocoon-a", "default", tainted=True),
        node("cocoon-b", "default", tainted=True),
        node("gpu-1", "gpu", tainted=True),
        node("worker-1", None, tainted=False),
    ]


SEEDS = ("none", "namespaces", "sandbox")


def apply_seed(api: Api, name: str) -> None:
    if name not in SEEDS:
        raise ValueError(f"unknown seed {name!r}; known: {', '.join(SEEDS)}")
    if name == "none":
        return
    for ns in ("default", "cocoon-system"):
        api.create_object("/api/v1/namespaces", _namespace(ns))
    if name == "namespaces":
        return
    for crd in (COCOONSET_CRD, COCOONHIBERNATION_CRD):
        api.create_object("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    for n in sandbox_nodes():
        api.create_object("/api/v1/nodes", n)
