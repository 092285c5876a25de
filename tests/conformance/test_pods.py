"""Pods: defaults, update rules, status, graceful deletion, field selectors.

Upstream: pkg/apis/core/v1/defaults.go, pkg/registry/core/pod/strategy.go (PrepareForCreate,
CheckGracefulDelete, field labels), pkg/apis/core/validation (ValidatePodUpdate).
"""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.conformance.helpers import body_of, pod, unique

NODE = "conformance-node-absent"


def test_pod_defaults(core: client.CoreV1Api, ns: str) -> None:
    """Scheme defaults: restartPolicy, dnsPolicy, grace period, scheduler, container fields."""
    body = pod("d")
    body["spec"]["containers"].append({"name": "latest", "image": "nginx"})
    out = core.create_namespaced_pod(ns, body)
    spec = out.spec
    assert spec.restart_policy == "Always"
    assert spec.dns_policy == "ClusterFirst"
    assert spec.termination_grace_period_seconds == 30
    assert spec.enable_service_links is True
    main, latest = spec.containers
    assert main.termination_message_path == "/dev/termination-log"
    assert main.termination_message_policy == "File"
    assert main.image_pull_policy == "IfNotPresent"
    assert latest.image_pull_policy == "Always"
    assert out.status.phase == "Pending"


def test_pod_without_containers_is_422(core: client.CoreV1Api, ns: str) -> None:
    """spec.containers is required."""
    body = pod("e")
    body["spec"]["containers"] = []
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_pod(ns, body)
    assert exc.value.status == 422
    fields = [c["field"] for c in body_of(exc.value)["details"]["causes"]]
    assert "spec.containers" in fields


def test_pod_bad_restart_policy_is_422(core: client.CoreV1Api, ns: str) -> None:
    """restartPolicy is one of Always, OnFailure, Never (FieldValueNotSupported)."""
    body = pod("r")
    body["spec"]["restartPolicy"] = "Sometimes"
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_pod(ns, body)
    assert exc.value.status == 422
    (cause,) = body_of(exc.value)["details"]["causes"]
    assert cause["field"] == "spec.restartPolicy"
    assert cause["reason"] == "FieldValueNotSupported"


def test_pod_status_is_ignored_on_create(core: client.CoreV1Api, ns: str) -> None:
    """PrepareForCreate resets status: a client cannot create a Running pod."""
    body = pod("s")
    body["status"] = {"phase": "Running"}
    assert core.create_namespaced_pod(ns, body).status.phase == "Pending"


def test_pod_status_subresource(core: client.CoreV1Api, ns: str) -> None:
    """/status does not change spec; the main resource ignores status changes."""
    created = core.create_namespaced_pod(ns, pod("st"))
    created.status.phase = "Running"
    created.spec.active_deadline_seconds = 60
    out = core.replace_namespaced_pod_status("st", ns, created)
    assert out.status.phase == "Running"
    assert out.status.qos_class == "BestEffort"
    assert out.spec.active_deadline_seconds is None
    out.status.phase = "Failed"
    again = core.replace_namespaced_pod("st", ns, out)
    assert again.status.phase == "Running"


def test_pod_spec_is_mostly_immutable(core: client.CoreV1Api, ns: str) -> None:
    """ValidatePodUpdate: only images, activeDeadlineSeconds, tolerations (added) may change."""
    created = core.create_namespaced_pod(ns, pod("imm"))
    created.spec.containers[0].image = "busybox:1.37"
    updated = core.replace_namespaced_pod("imm", ns, created)
    assert updated.spec.containers[0].image == "busybox:1.37"
    updated.spec.node_selector = {"disk": "ssd"}
    with pytest.raises(client.ApiException) as exc:
        core.replace_namespaced_pod("imm", ns, updated)
    assert exc.value.status == 422
    assert "pod updates may not change fields" in body_of(exc.value)["message"]


def test_bound_pod_deletion_is_graceful(core: client.CoreV1Api, ns: str) -> None:
    """A bound pod is only marked (deletionTimestamp, grace 30): the kubelet finishes it."""
    core.create_namespaced_pod(ns, pod("g", node=NODE))
    core.delete_namespaced_pod("g", ns)
    marked = core.read_namespaced_pod("g", ns)
    assert marked.metadata.deletion_timestamp is not None
    assert marked.metadata.deletion_grace_period_seconds == 30
    core.delete_namespaced_pod("g", ns, grace_period_seconds=0)
    with pytest.raises(client.ApiException) as exc:
        core.read_namespaced_pod("g", ns)
    assert exc.value.status == 404


def test_unbound_pod_goes_at_once(core: client.CoreV1Api, ns: str) -> None:
    """CheckGracefulDelete: a pod never scheduled has nothing to stop and is deleted now."""
    core.create_namespaced_pod(ns, pod("u"))
    out = core.delete_namespaced_pod("u", ns)
    assert out.metadata.name == "u"  # pods answer DELETE with the object
    with pytest.raises(client.ApiException) as exc:
        core.read_namespaced_pod("u", ns)
    assert exc.value.status == 404


def test_field_selector_on_node_name(core: client.CoreV1Api, ns: str) -> None:
    """Pods support the field selector spec.nodeName (=, ==, !=)."""
    core.create_namespaced_pod(ns, pod("on", node=NODE))
    core.create_namespaced_pod(ns, pod("off"))

    def names(selector: str) -> list[str]:
        return sorted(
            p.metadata.name for p in core.list_namespaced_pod(ns, field_selector=selector).items
        )

    assert names(f"spec.nodeName={NODE}") == ["on"]
    assert names(f"spec.nodeName=={NODE}") == ["on"]
    assert names(f"spec.nodeName!={NODE}") == ["off"]
    assert names("spec.nodeName=") == ["off"]
    assert names(f"spec.nodeName={NODE},metadata.name=off") == []


def test_field_selector_on_phase(core: client.CoreV1Api, ns: str) -> None:
    """Pods support the field selector status.phase."""
    running = core.create_namespaced_pod(ns, pod("run"))
    core.create_namespaced_pod(ns, pod("wait"))
    running.status.phase = "Running"
    core.replace_namespaced_pod_status("run", ns, running)
    got = core.list_namespaced_pod(ns, field_selector="status.phase=Running").items
    assert [p.metadata.name for p in got] == ["run"]
    got = core.list_namespaced_pod(ns, field_selector="status.phase!=Running").items
    assert [p.metadata.name for p in got] == ["wait"]


def test_unknown_field_selector_is_400(core: client.CoreV1Api, ns: str) -> None:
    """Field labels a kind does not convert are 400 BadRequest."""
    with pytest.raises(client.ApiException) as exc:
        core.list_namespaced_pod(ns, field_selector="spec.containers=x")
    assert exc.value.status == 400
    with pytest.raises(client.ApiException) as exc:
        core.list_namespaced_config_map(ns, field_selector="data.a=1")
    assert exc.value.status == 400


def test_metadata_name_field_selector_on_any_kind(core: client.CoreV1Api, ns: str) -> None:
    """metadata.name and metadata.namespace select on every kind."""
    core.create_namespaced_config_map(ns, {"metadata": {"name": "one"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "two"}})
    got = core.list_namespaced_config_map(ns, field_selector="metadata.name=two").items
    assert [c.metadata.name for c in got] == ["two"]
    got = core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={ns},metadata.name!=two"
    ).items
    assert sorted(c.metadata.name for c in got if c.metadata.name != "kube-root-ca.crt") == ["one"]


def test_nodes_are_cluster_scoped_with_unschedulable_selector(
    core: client.CoreV1Api, cleanup: list[str]
) -> None:
    """Nodes have no namespace, keep the status they register with, select on spec.unschedulable."""
    cordoned, open_ = unique("conf-node"), unique("conf-node")
    for name, unschedulable in ((cordoned, True), (open_, False)):
        cleanup.append(f"/api/v1/nodes/{name}")
        core.create_node(
            {
                "metadata": {"name": name, "labels": {"conformance": "yes"}},
                "spec": {"unschedulable": unschedulable},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            }
        )
    got = core.read_node(cordoned)
    assert got.metadata.namespace is None
    assert got.status.conditions[0].type == "Ready"
    picked = core.list_node(
        label_selector="conformance=yes", field_selector="spec.unschedulable=true"
    ).items
    assert [n.metadata.name for n in picked] == [cordoned]
    picked = core.list_node(
        label_selector="conformance=yes", field_selector="spec.unschedulable=false"
    ).items
    assert [n.metadata.name for n in picked] == [open_]


def test_pod_binding_subresource(core: client.CoreV1Api, ns: str, api: client.ApiClient) -> None:
    """POST pods/<name>/binding sets spec.nodeName once; binding again is 409."""
    from tests.conformance.helpers import raw

    core.create_namespaced_pod(ns, pod("b"))
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "b"},
        "target": {"kind": "Node", "name": NODE},
    }
    resp = raw(api, "POST", f"/api/v1/namespaces/{ns}/pods/b/binding", body=binding)
    assert resp.status == 201
    assert core.read_namespaced_pod("b", ns).spec.node_name == NODE
    resp = raw(api, "POST", f"/api/v1/namespaces/{ns}/pods/b/binding", body=binding)
    assert resp.status == 409
