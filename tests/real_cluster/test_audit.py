"""Audit annotations as a real kube-apiserver files them (its `--audit-log-path`).

A placement reaches the audit log under the mutating webhook's name (`<webhook>/vm-name`, ...),
next to kube-apiserver's own record that the webhook mutated the object; a refused scale-down
carries validate's reason under the validating webhook's name.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.helpers.demo import demo_deployment
from tests.real_cluster.harness import cocoon_pod, vm_name
from tests.sandbox import Sandbox, sandbox

pytestmark = pytest.mark.control_plane

MUTATE = "pods.mutate.cocoonstack.io"
VALIDATE = "workloads.validate.cocoonstack.io"
POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "resources": [
                {"group": "", "resources": ["pods"]},
                {"group": "apps", "resources": ["deployments", "deployments/scale"]},
            ],
        },
        {"level": "None"},
    ],
}
AUDIT_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    directory = tmp_path_factory.mktemp("audit")
    policy = directory / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    flags = [f"--audit-policy-file={policy}", f"--audit-log-path={directory / 'audit.log'}"]
    with sandbox(directory, preferred=(0, 0), cluster="real", apiserver_args=flags) as running:
        yield running


def audit_event(box: Sandbox, verb: str, resource: str, name: str) -> dict[str, Any]:
    """The ResponseComplete event of one request on `default/<name>`, once it is written."""
    log = Path(box.directory) / "audit.log"
    deadline = time.monotonic() + AUDIT_TIMEOUT_S
    while True:
        lines = log.read_text().splitlines() if log.exists() else []
        for line in lines:
            event = json.loads(line)
            ref = event.get("objectRef", {})
            if (event["verb"], ref.get("resource"), ref.get("namespace"), ref.get("name")) == (
                verb,
                resource,
                "default",
                name,
            ):
                return event  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"no audit event for {verb} {resource} {name}"
        time.sleep(0.2)


def of_webhook(annotations: dict[str, str], webhook: str) -> dict[str, str]:
    return {k: v for k, v in annotations.items() if k.startswith(f"{webhook}/")}


def bare_pod(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    pod = cocoon_pod("default", name)
    pod["metadata"]["annotations"] = annotations or {}
    return pod


def test_a_placement_is_in_the_audit_log(box: Sandbox) -> None:
    core = client.CoreV1Api(box.cluster.api_client())
    pod = core.create_namespaced_pod("default", bare_pod("solo"))
    assert vm_name(pod) == "vk-default-solo"
    annotations = audit_event(box, "create", "pods", "solo")["annotations"]
    assert of_webhook(annotations, MUTATE) == {
        f"{MUTATE}/vm-name": "vk-default-solo",
        f"{MUTATE}/node": pod.spec.node_name,
        f"{MUTATE}/pool": "default",
        f"{MUTATE}/slot": "0",
        f"{MUTATE}/key": "default._pod.solo",
    }
    assert json.loads(annotations["mutation.webhook.admission.k8s.io/round_0_index_0"]) == {
        "configuration": "cocoon-webhook-mutate",
        "webhook": MUTATE,
        "mutated": True,
    }


def test_a_pod_admitted_unplaced_has_the_reason_in_the_audit_log(box: Sandbox) -> None:
    core = client.CoreV1Api(box.cluster.api_client())
    odd = bare_pod("odd", {"cocoonstack.io/pool": "no such/pool"})
    pod = core.create_namespaced_pod("default", odd)
    assert vm_name(pod) is None
    annotations = audit_event(box, "create", "pods", "odd")["annotations"]
    assert of_webhook(annotations, MUTATE) == {f"{MUTATE}/reason": "invalid pool 'no such/pool'"}


def test_a_denied_scale_down_is_in_the_audit_log_with_its_reason(box: Sandbox) -> None:
    apps = client.AppsV1Api(box.cluster.api_client())
    apps.create_namespaced_deployment("default", demo_deployment(replicas=3))
    with pytest.raises(ApiException) as refused:
        apps.patch_namespaced_deployment("demo", "default", {"spec": {"replicas": 1}})
    assert refused.value.status == 403
    event = audit_event(box, "patch", "deployments", "demo")
    assert event["responseStatus"]["code"] == 403
    assert of_webhook(event["annotations"], VALIDATE) == {
        f"{VALIDATE}/reason": "scale-down blocked for cocoon Deployment default/demo (3 -> 1). "
        "Use a CocoonHibernation CR to suspend individual agents."
    }
