"""The resource types the emulator serves: built-in kinds and those CRDs register.

A `ResourceType` carries what discovery advertises and what the REST layer needs to route and
validate a request (scope, subresources, list kind, schema of a custom resource).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    singular: str = ""
    short_names: list[str] = field(default_factory=list)
    status: bool = False
    scale: bool = False
    # Custom resources: schema validation and pruning, no strategic merge, PUT needs a version.
    custom: bool = False
    schema: dict[str, Any] | None = None
    # CR /scale paths (CRD subresources.scale), as dotted paths without the leading dot.
    scale_spec_path: str = "spec.replicas"
    scale_status_path: str = "status.replicas"
    scale_selector_path: str = ""
    storage_version: str = ""
    categories: list[str] = field(default_factory=list)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    def discovery(self) -> list[dict[str, Any]]:
        """The APIResource entries of this type and its subresources."""
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular or self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": VERBS,
        }
        if self.short_names:
            entry["shortNames"] = self.short_names
        if self.categories:
            entry["categories"] = self.categories
        out = [entry]
        if self.status:
            out.append(
                {
                    "name": self.plural + "/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        if self.scale:
            out.append(
                {
                    "name": self.plural + "/scale",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": ["get", "patch", "update"],
                }
            )
        return out


def builtin_types() -> list[ResourceType]:
    return [
        ResourceType("", "v1", "Namespace", "namespaces", False, short_names=["ns"], status=True),
        ResourceType(
            "", "v1", "Pod", "pods", True, short_names=["po"], status=True, categories=["all"]
        ),
        ResourceType("", "v1", "Node", "nodes", False, short_names=["no"], status=True),
        ResourceType("", "v1", "ConfigMap", "configmaps", True, short_names=["cm"]),
        ResourceType(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            True,
            short_names=["deploy"],
            status=True,
            scale=True,
            categories=["all"],
        ),
        ResourceType(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            True,
            short_names=["sts"],
            status=True,
            scale=True,
            categories=["all"],
        ),
        ResourceType(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            True,
            short_names=["rs"],
            status=True,
            scale=True,
            categories=["all"],
        ),
        ResourceType(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            False,
        ),
        ResourceType(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            False,
        ),
        ResourceType(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            False,
            short_names=["crd", "crds"],
            status=True,
        ),
    ]


# Groups whose preferred version the discovery document names first; all serve one version here.
BUILTIN_GROUP_ORDER = ["", "apps", "admissionregistration.k8s.io", "apiextensions.k8s.io"]


class Registry:
    """Thread-safe map of (group, version, plural) → ResourceType, plus the CRD-backed ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._crd_owned: dict[str, list[tuple[str, str, str]]] = {}
        for t in builtin_types():
            self._types[(t.group, t.version, t.plural)] = t

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self._lock:
            return self._types.get((group, version, plural))

    def by_resource(self, group: str, plural: str) -> ResourceType | None:
        """Any served version of a resource (used where the version does not matter)."""
        with self._lock:
            for (g, _v, p), t in self._types.items():
                if g == group and p == plural:
                    return t
        return None

    def all(self) -> list[ResourceType]:
        with self._lock:
            return list(self._types.values())

    def groups(self) -> dict[str, list[str]]:
        """group → served versions (the storage/preferred version first)."""
        with self._lock:
            out: dict[str, list[str]] = {}
            for (g, v, _p), t in self._types.items():
                versions = out.setdefault(g, [])
                if v not in versions:
                    if t.storage_version == v:
                        versions.insert(0, v)
                    else:
                        versions.append(v)
            return out

    def register_crd(self, crd_name: str, types: list[ResourceType]) -> None:
        with self._lock:
            for key in self._crd_owned.pop(crd_name, []):
                self._types.pop(key, None)
            keys = []
            for t in types:
                key = (t.group, t.version, t.plural)
                self._types[key] = t
                keys.append(key)
            self._crd_owned[crd_name] = keys

    def unregister_crd(self, crd_name: str) -> None:
        with self._lock:
            for key in self._crd_owned.pop(crd_name, []):
                self._types.pop(key, None)

    def reset(self) -> None:
        with self._lock:
            for keys in self._crd_owned.values():
                for key in keys:
                    self._types.pop(key, None)
            self._crd_owned.clear()


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The served versions of a (validated) CRD as resource types."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group", "")
    out = []
    storage = next((v["name"] for v in spec.get("versions", []) if v.get("storage")), "")
    for v in spec.get("versions", []):
        if not v.get("served", True):
            continue
        sub = v.get("subresources") or {}
        scale = sub.get("scale")
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        t = ResourceType(
            group=group,
            version=v["name"],
            kind=names.get("kind", ""),
            plural=names.get("plural", ""),
            namespaced=spec.get("scope") == "Namespaced",
            singular=names.get("singular") or names.get("kind", "").lower(),
            short_names=list(names.get("shortNames") or []),
            categories=list(names.get("categories") or []),
            status="status" in sub,
            scale=scale is not None,
            custom=True,
            schema=schema,
            storage_version=storage,
        )
        if scale:
            t.scale_spec_path = str(scale.get("specReplicasPath", ".spec.replicas")).lstrip(".")
            t.scale_status_path = str(scale.get("statusReplicasPath", ".status.replicas")).lstrip(
                "."
            )
            t.scale_selector_path = str(scale.get("labelSelectorPath") or "").lstrip(".")
        out.append(t)
    return out
