"""Deployments and StatefulSets: defaults, validation, generation, the /scale subresource.

Upstream: pkg/apis/apps/v1/defaults.go, pkg/apis/apps/validation, pkg/registry/apps/*/strategy.go
and storage.go (ScaleREST).
"""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.conformance.helpers import body_of, deployment, raw


def statefulset(name: str, replicas: int = 1) -> dict[str, object]:
    body = deployment(name, replicas)
    body["kind"] = "StatefulSet"
    body["spec"]["serviceName"] = name  # type: ignore[index]
    return body


def test_deployment_defaults(apps: client.AppsV1Api, ns: str) -> None:
    """SetDefaults_Deployment: strategy RollingUpdate 25%/25%, history 10, deadline 600."""
    body = deployment("dd")
    del body["spec"]["replicas"]
    out = apps.create_namespaced_deployment(ns, body)
    assert out.spec.replicas == 1
    assert out.spec.strategy.type == "RollingUpdate"
    assert out.spec.strategy.rolling_update.max_surge == "25%"
    assert out.spec.strategy.rolling_update.max_unavailable == "25%"
    assert out.spec.revision_history_limit == 10
    assert out.spec.progress_deadline_seconds == 600
    assert out.spec.template.spec.restart_policy == "Always"
    assert out.metadata.generation == 1


def test_selector_must_match_template_labels(apps: client.AppsV1Api, ns: str) -> None:
    """ValidateDeploymentSpec: `selector` does not match template `labels` is 422."""
    body = deployment("mismatch")
    body["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(client.ApiException) as exc:
        apps.create_namespaced_deployment(ns, body)
    assert exc.value.status == 422
    fields = [c["field"] for c in body_of(exc.value)["details"]["causes"]]
    assert "spec.template.metadata.labels" in fields


def test_selector_is_immutable(apps: client.AppsV1Api, ns: str) -> None:
    """apps/v1 selectors cannot change after creation (field is immutable)."""
    apps.create_namespaced_deployment(ns, deployment("imm"))
    patch = {
        "spec": {
            "selector": {"matchLabels": {"app": "imm", "x": "y"}},
            "template": {"metadata": {"labels": {"app": "imm", "x": "y"}}},
        }
    }
    with pytest.raises(client.ApiException) as exc:
        apps.patch_namespaced_deployment("imm", ns, patch)
    assert exc.value.status == 422
    assert any(c["field"] == "spec.selector" for c in body_of(exc.value)["details"]["causes"])


def test_negative_replicas_is_422(apps: client.AppsV1Api, ns: str) -> None:
    """spec.replicas must be ≥ 0."""
    with pytest.raises(client.ApiException) as exc:
        apps.create_namespaced_deployment(ns, deployment("neg", replicas=-1))
    assert exc.value.status == 422


def test_generation_counts_spec_changes_only(apps: client.AppsV1Api, ns: str) -> None:
    """metadata.generation grows on spec changes, not on label changes."""
    apps.create_namespaced_deployment(ns, deployment("gen"))
    out = apps.patch_namespaced_deployment("gen", ns, {"metadata": {"labels": {"a": "b"}}})
    assert out.metadata.generation == 1
    out = apps.patch_namespaced_deployment("gen", ns, {"spec": {"minReadySeconds": 5}})
    assert out.metadata.generation == 2


def test_scale_get_reflects_the_deployment(apps: client.AppsV1Api, ns: str) -> None:
    """GET deployments/<name>/scale is an autoscaling/v1 Scale with spec.replicas and selector."""
    dep = apps.create_namespaced_deployment(ns, deployment("sc", replicas=3))
    scale = apps.read_namespaced_deployment_scale("sc", ns)
    assert scale.spec.replicas == 3
    assert scale.status.selector == "app=sc"
    assert scale.metadata.uid == dep.metadata.uid


def test_scale_put_sets_replicas_and_bumps_generation(apps: client.AppsV1Api, ns: str) -> None:
    """PUT deployments/<name>/scale changes spec.replicas; the parent's generation grows."""
    apps.create_namespaced_deployment(ns, deployment("sp", replicas=1))
    scale = apps.read_namespaced_deployment_scale("sp", ns)
    scale.spec.replicas = 4
    # Unconditional: a real deployment controller writes status between the read and the PUT.
    scale.metadata.resource_version = None
    out = apps.replace_namespaced_deployment_scale("sp", ns, scale)
    assert out.spec.replicas == 4
    dep = apps.read_namespaced_deployment("sp", ns)
    assert dep.spec.replicas == 4
    assert dep.metadata.generation == 2


def test_scale_patch(apps: client.AppsV1Api, ns: str, api: client.ApiClient) -> None:
    """PATCH deployments/<name>/scale with a merge patch."""
    apps.create_namespaced_deployment(ns, deployment("pp", replicas=1))
    resp = raw(
        api,
        "PATCH",
        f"/apis/apps/v1/namespaces/{ns}/deployments/pp/scale",
        body={"spec": {"replicas": 0}},
        content_type="application/merge-patch+json",
    )
    assert resp.status == 200
    assert resp.json()["kind"] == "Scale"
    assert apps.read_namespaced_deployment("pp", ns).spec.replicas == 0


def test_stale_scale_is_conflict(apps: client.AppsV1Api, ns: str) -> None:
    """A Scale carrying an old resourceVersion is 409 Conflict."""
    apps.create_namespaced_deployment(ns, deployment("ss", replicas=1))
    scale = apps.read_namespaced_deployment_scale("ss", ns)
    apps.patch_namespaced_deployment("ss", ns, {"metadata": {"labels": {"touch": "1"}}})
    scale.spec.replicas = 2
    with pytest.raises(client.ApiException) as exc:
        apps.replace_namespaced_deployment_scale("ss", ns, scale)
    assert exc.value.status == 409


def test_negative_scale_is_422(apps: client.AppsV1Api, ns: str, api: client.ApiClient) -> None:
    """Scale validation: spec.replicas ≥ 0."""
    apps.create_namespaced_deployment(ns, deployment("ns", replicas=1))
    resp = raw(
        api,
        "PATCH",
        f"/apis/apps/v1/namespaces/{ns}/deployments/ns/scale",
        body={"spec": {"replicas": -2}},
        content_type="application/merge-patch+json",
    )
    assert resp.status == 422


def test_statefulset_scale(apps: client.AppsV1Api, ns: str) -> None:
    """statefulsets/<name>/scale works like the Deployment one."""
    apps.create_namespaced_stateful_set(ns, statefulset("web", 2))
    scale = apps.read_namespaced_stateful_set_scale("web", ns)
    assert scale.spec.replicas == 2
    scale.spec.replicas = 5
    scale.metadata.resource_version = None  # unconditional: the controller writes status too
    apps.replace_namespaced_stateful_set_scale("web", ns, scale)
    sts = apps.read_namespaced_stateful_set("web", ns)
    assert sts.spec.replicas == 5
    assert sts.spec.pod_management_policy == "OrderedReady"


def test_statefulset_immutable_fields(apps: client.AppsV1Api, ns: str) -> None:
    """serviceName and podManagementPolicy (and selector, volumeClaimTemplates) are immutable,
    each its own `field is immutable`; other fields such as minReadySeconds may change."""
    apps.create_namespaced_stateful_set(ns, statefulset("lim"))
    patch = {"spec": {"serviceName": "other", "podManagementPolicy": "Parallel"}}
    with pytest.raises(client.ApiException) as exc:
        apps.patch_namespaced_stateful_set("lim", ns, patch)
    assert exc.value.status == 422
    assert body_of(exc.value)["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "other": field is immutable',
            "field": "spec.serviceName",
        },
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "Parallel": field is immutable',
            "field": "spec.podManagementPolicy",
        },
    ]
    out = apps.patch_namespaced_stateful_set("lim", ns, {"spec": {"minReadySeconds": 5}})
    assert out.spec.min_ready_seconds == 5


def test_missing_deployment_scale_is_404(apps: client.AppsV1Api, ns: str) -> None:
    """The scale of an absent Deployment is 404 on the deployments resource."""
    with pytest.raises(client.ApiException) as exc:
        apps.read_namespaced_deployment_scale("none", ns)
    assert exc.value.status == 404
    assert body_of(exc.value)["message"] == 'deployments.apps "none" not found'
