"""Discovery, /version and the shape of errors (k8s.io/apiserver/pkg/endpoints/discovery)."""

from __future__ import annotations

from kubernetes import client

from tests.conformance.helpers import raw


def test_version_endpoint(api: client.ApiClient) -> None:
    """GET /version answers version.Info (major, minor, gitVersion), as `kubectl version` reads."""
    info = raw(api, "GET", "/version").json()
    assert info["major"] == "1"
    assert info["gitVersion"].startswith("v1.")


def test_core_api_versions(api: client.ApiClient) -> None:
    """GET /api lists the legacy group's versions (APIVersions), i.e. v1."""
    body = raw(api, "GET", "/api").json()
    assert body["kind"] == "APIVersions"
    assert "v1" in body["versions"]


def test_group_list_names_apps_with_preferred_version(api: client.ApiClient) -> None:
    """GET /apis is an APIGroupList; each group has versions and a preferredVersion."""
    body = raw(api, "GET", "/apis").json()
    assert body["kind"] == "APIGroupList"
    groups = {g["name"]: g for g in body["groups"]}
    apps = groups["apps"]
    assert {"groupVersion": "apps/v1", "version": "v1"} in apps["versions"]
    assert apps["preferredVersion"]["groupVersion"] == "apps/v1"
    assert "admissionregistration.k8s.io" in groups
    assert "apiextensions.k8s.io" in groups


def test_core_resource_list(api: client.ApiClient) -> None:
    """GET /api/v1 is an APIResourceList: scope, kind, verbs and subresources per resource."""
    body = raw(api, "GET", "/api/v1").json()
    assert body["kind"] == "APIResourceList"
    assert body["groupVersion"] == "v1"
    res = {r["name"]: r for r in body["resources"]}
    assert res["configmaps"]["namespaced"] is True
    assert res["configmaps"]["kind"] == "ConfigMap"
    assert {"create", "get", "list", "watch", "update", "patch", "delete"} <= set(
        res["configmaps"]["verbs"]
    )
    assert res["nodes"]["namespaced"] is False
    assert res["namespaces"]["namespaced"] is False
    assert "pods/status" in res


def test_apps_scale_subresource_is_autoscaling_scale(api: client.ApiClient) -> None:
    """deployments/scale and statefulsets/scale speak autoscaling/v1 Scale."""
    body = raw(api, "GET", "/apis/apps/v1").json()
    res = {r["name"]: r for r in body["resources"]}
    for name in ("deployments/scale", "statefulsets/scale"):
        assert res[name]["kind"] == "Scale"
        assert res[name]["group"] == "autoscaling"
        assert res[name]["version"] == "v1"


def test_unknown_resource_is_404(api: client.ApiClient) -> None:
    """A resource the group version does not serve answers 404 NotFound."""
    resp = raw(api, "GET", "/api/v1/namespaces/default/widgets")
    assert resp.status == 404


def test_error_is_a_status_object(api: client.ApiClient, ns: str) -> None:
    """Errors are metav1.Status: kind Status, apiVersion v1, status Failure, reason, code."""
    resp = raw(api, "GET", f"/api/v1/namespaces/{ns}/configmaps/absent")
    assert resp.status == 404
    body = resp.json()
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["reason"] == "NotFound"
    assert body["code"] == 404
    assert body["details"] == {"name": "absent", "kind": "configmaps"}


def test_protobuf_body_is_unsupported(api: client.ApiClient, ns: str, emulator_only: None) -> None:
    """Out of scope by design: protobuf bodies get 415 UnsupportedMediaType (JSON only)."""
    resp = raw(
        api,
        "POST",
        f"/api/v1/namespaces/{ns}/configmaps",
        body=b"k8s\x00\x0a",
        content_type="application/vnd.kubernetes.protobuf",
    )
    assert resp.status == 415
    assert resp.json()["reason"] == "UnsupportedMediaType"
