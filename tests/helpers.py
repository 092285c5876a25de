"""Builders for AdmissionReview bodies and small test utilities shared by the suites."""

from __future__ import annotations

import base64
import json
from typing import Any

from prometheus_client import REGISTRY

COCOON_TOLERATION = {"key": "virtual-kubelet.io/provider", "operator": "Exists"}


def review(
    obj: Any = None,
    old: Any = None,
    *,
    operation: str = "UPDATE",
    kind: str = "Deployment",
    group: str = "apps",
    version: str = "v1",
    resource: str = "deployments",
    sub_resource: str = "",
    namespace: str = "ns",
    name: str = "demo",
    dry_run: bool = False,
    uid: str = "uid-1",
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "name": name,
        "namespace": namespace,
        "operation": operation,
        "object": obj,
        "oldObject": old,
        "dryRun": dry_run,
    }
    if sub_resource:
        request["subResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def workload(replicas: int | None = 3, *, cocoon: bool = True, kind: str = "Deployment") -> dict:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "demo"}},
        "template": {
            "metadata": {"labels": {"app": "demo"}},
            "spec": {
                "containers": [{"name": "agent", "image": "agent:1"}],
                "tolerations": [COCOON_TOLERATION] if cocoon else [],
            },
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "demo"}, "spec": spec}


def scale(replicas: int | None) -> dict[str, Any]:
    spec = {} if replicas is None else {"replicas": replicas}
    return {"apiVersion": "autoscaling/v1", "kind": "Scale", "spec": spec}


def response_of(http_response: Any) -> dict[str, Any]:
    """The `response` of an AdmissionReview reply, after checking the envelope around it."""
    assert http_response.status_code == 200, http_response.text
    assert http_response.headers["content-type"].startswith("application/json")
    document = http_response.json()
    assert document["apiVersion"] == "admission.k8s.io/v1"
    assert document["kind"] == "AdmissionReview"
    result: dict[str, Any] = document["response"]
    return result


def patch_of(response: dict[str, Any]) -> list[dict[str, Any]]:
    assert response["patchType"] == "JSONPatch"
    ops: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return ops


def admission_count(handler: str, decision: str) -> float:
    value = REGISTRY.get_sample_value(
        "cocoon_webhook_admission_total", {"handler": handler, "decision": decision}
    )
    return value or 0.0


def total_admissions(handler: str) -> float:
    return sum(admission_count(handler, d) for d in ("allow", "deny", "error", "affinity_failed"))
