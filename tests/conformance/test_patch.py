"""PATCH in its three formats (k8s.io/apiserver/pkg/endpoints/handlers/patch.go)."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.conformance.helpers import body_of, configmap, deployment, raw

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH_REJECTED = "the server rejected our request due to an error in our request"


def test_merge_patch_sets_and_removes_keys(
    api: client.ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    """RFC 7386: members merge, `null` removes a member."""
    core.create_namespaced_config_map(ns, configmap("m", {"a": "1", "b": "2"}))
    resp = raw(
        api,
        "PATCH",
        f"/api/v1/namespaces/{ns}/configmaps/m",
        body={"data": {"a": None, "c": "3"}},
        content_type=MERGE,
    )
    assert resp.status == 200
    assert resp.json()["data"] == {"b": "2", "c": "3"}


def test_json_patch_operations(api: client.ApiClient, core: client.CoreV1Api, ns: str) -> None:
    """RFC 6902: add, replace and a passing test op apply in order."""
    core.create_namespaced_config_map(ns, configmap("j", {"a": "1"}))
    ops = [
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "2"},
        {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
    ]
    resp = raw(
        api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/j", body=ops, content_type=JSON_PATCH
    )
    assert resp.status == 200
    assert resp.json()["data"] == {"a": "2"}
    assert resp.json()["metadata"]["labels"] == {"x": "y"}


def test_json_patch_failed_test_is_422(
    api: client.ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    """A JSON patch that does not apply (failed `test`) is 422 and changes nothing."""
    core.create_namespaced_config_map(ns, configmap("t", {"a": "1"}))
    ops = [
        {"op": "test", "path": "/data/a", "value": "2"},
        {"op": "replace", "path": "/data/a", "value": "3"},
    ]
    resp = raw(
        api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/t", body=ops, content_type=JSON_PATCH
    )
    assert resp.status == 422
    # NewGenericServerResponse(422): the library's own message ("testing value ... failed")
    # never reaches the client
    assert (resp.json()["reason"], resp.json()["message"]) == ("Invalid", JSON_PATCH_REJECTED)
    assert core.read_namespaced_config_map("t", ns).data == {"a": "1"}


@pytest.mark.parametrize(
    "op",
    [
        pytest.param({"op": "frob", "path": "/data/a"}, id="unknown-op"),
        pytest.param({"op": "add", "value": "x"}, id="no-path"),
        pytest.param({"op": "replace", "path": "/metadata/finalizers/0", "value": "x"}, id="index"),
    ],
)
def test_json_patch_operations_that_do_not_apply_are_422(
    api: client.ApiClient, core: client.CoreV1Api, ns: str, op: dict[str, str]
) -> None:
    """jsonpatch.DecodePatch takes any objects; what is wrong with one shows when it is applied."""
    core.create_namespaced_config_map(ns, configmap("u", {"a": "1"}))
    resp = raw(
        api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/u", body=[op], content_type=JSON_PATCH
    )
    assert (resp.status, resp.json()["message"]) == (422, JSON_PATCH_REJECTED)


def test_json_patch_replace_of_a_missing_member_adds_it(
    api: client.ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    """evanphx/json-patch v4, not RFC 6902: `replace` needs only the parent to exist."""
    core.create_namespaced_config_map(ns, configmap("r", {"a": "1"}))
    ops = [{"op": "replace", "path": "/data/b", "value": "2"}]
    resp = raw(
        api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/r", body=ops, content_type=JSON_PATCH
    )
    assert resp.status == 200
    assert resp.json()["data"] == {"a": "1", "b": "2"}


def test_json_patch_that_is_not_a_list_is_400(
    api: client.ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    """A JSON patch document must be an array of operations: anything else is 400."""
    core.create_namespaced_config_map(ns, configmap("n"))
    resp = raw(
        api,
        "PATCH",
        f"/api/v1/namespaces/{ns}/configmaps/n",
        body={"op": "add"},
        content_type=JSON_PATCH,
    )
    assert resp.status == 400
    assert resp.json()["message"] == (
        "error decoding patch: json: cannot unmarshal object into Go value of type "
        "[]handlers.jsonPatchOp"
    )


def test_strategic_merge_merges_containers_and_env_by_name(apps: client.AppsV1Api, ns: str) -> None:
    """Strategic merge: containers and env merge by `name`; `$patch: delete` removes an element."""
    dep = deployment("smp")
    dep["spec"]["template"]["spec"]["containers"] = [
        {
            "name": "a",
            "image": "img:1",
            "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
        },
        {"name": "b", "image": "other:1"},
    ]
    apps.create_namespaced_deployment(ns, dep)
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "a",
                            "image": "img:2",
                            "env": [{"name": "Y", "$patch": "delete"}, {"name": "Z", "value": "3"}],
                        }
                    ]
                }
            }
        }
    }
    out = apps.patch_namespaced_deployment("smp", ns, patch)
    containers = {c.name: c for c in out.spec.template.spec.containers}
    assert containers["a"].image == "img:2"
    assert containers["b"].image == "other:1"
    assert [c.name for c in out.spec.template.spec.containers] == ["a", "b"]
    # Without $setElementOrder the patch's elements lead (normalizeElementOrder): Z before X.
    assert [(e.name, e.value) for e in containers["a"].env] == [("Z", "3"), ("X", "1")]


def test_strategic_merge_order_weaves_server_only_elements(apps: client.AppsV1Api, ns: str) -> None:
    """mergeSortedSlice: a server-only element stays ahead of patched ones it preceded;
    `$setElementOrder` (what kubectl sends) overrides the order."""
    dep = deployment("order")
    dep["spec"]["template"]["spec"]["containers"] = [
        {"name": name, "image": "i:1"} for name in ("a", "b", "c")
    ]
    apps.create_namespaced_deployment(ns, dep)

    def names(patch: dict[str, object]) -> list[str]:
        out = apps.patch_namespaced_deployment("order", ns, {"spec": {"template": {"spec": patch}}})
        return [c.name for c in out.spec.template.spec.containers]

    patched = [{"name": "c", "image": "i:2"}, {"name": "a", "image": "i:2"}]
    assert names({"containers": patched}) == ["b", "c", "a"]
    assert names({"$setElementOrder/containers": [{"name": n} for n in "abc"],
                  "containers": [{"name": "b", "image": "i:2"}]}) == ["a", "b", "c"]  # fmt: skip


def test_strategic_merge_replaces_lists_without_merge_key(apps: client.AppsV1Api, ns: str) -> None:
    """Lists without a patch strategy (container args) are replaced wholesale."""
    dep = deployment("args")
    dep["spec"]["template"]["spec"]["containers"][0]["args"] = ["a", "b"]
    apps.create_namespaced_deployment(ns, dep)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "main", "args": ["c"]}]}}}}
    out = apps.patch_namespaced_deployment("args", ns, patch)
    assert out.spec.template.spec.containers[0].args == ["c"]


def test_strategic_merge_finalizers_merge_as_a_set(
    api: client.ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    """metadata.finalizers has patchStrategy merge: patched values join the existing ones."""
    core.create_namespaced_config_map(ns, configmap("f", finalizers=["example.com/a"]))
    resp = raw(
        api,
        "PATCH",
        f"/api/v1/namespaces/{ns}/configmaps/f",
        body={"metadata": {"finalizers": ["example.com/b"]}},
        content_type=STRATEGIC,
    )
    # the patched value leads, as for keyed lists (normalizeElementOrder)
    assert resp.json()["metadata"]["finalizers"] == ["example.com/b", "example.com/a"]
    raw(
        api,
        "PATCH",
        f"/api/v1/namespaces/{ns}/configmaps/f",
        body={"metadata": {"finalizers": None}},
        content_type=MERGE,
    )


def test_patch_missing_object_is_404(api: client.ApiClient, ns: str) -> None:
    """PATCH of an absent object is 404 NotFound."""
    resp = raw(
        api,
        "PATCH",
        f"/api/v1/namespaces/{ns}/configmaps/nobody",
        body={"data": {}},
        content_type=MERGE,
    )
    assert resp.status == 404


def test_patch_with_stale_resource_version_is_conflict(
    api: client.ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    """A patch that names a resourceVersion is conditional: an old one is 409 Conflict."""
    cm = core.create_namespaced_config_map(ns, configmap("s", {"a": "1"}))
    core.patch_namespaced_config_map("s", ns, {"data": {"a": "2"}})
    resp = raw(
        api,
        "PATCH",
        f"/api/v1/namespaces/{ns}/configmaps/s",
        body={"metadata": {"resourceVersion": cm.metadata.resource_version}, "data": {"a": "3"}},
        content_type=MERGE,
    )
    assert resp.status == 409
    assert resp.json()["reason"] == "Conflict"


def test_unknown_patch_type_is_415(api: client.ApiClient, core: client.CoreV1Api, ns: str) -> None:
    """A PATCH body in a media type that is no patch format is 415 UnsupportedMediaType."""
    core.create_namespaced_config_map(ns, configmap("u"))
    resp = raw(
        api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/u", body=b"{}", content_type="text/plain"
    )
    assert resp.status == 415


def test_patch_result_is_validated(core: client.CoreV1Api, ns: str) -> None:
    """A patch whose result is invalid (bad key) is 422 like any update."""
    core.create_namespaced_config_map(ns, configmap("v"))
    with pytest.raises(client.ApiException) as exc:
        core.patch_namespaced_config_map("v", ns, {"data": {"a/b": "x"}})
    assert exc.value.status == 422
    assert body_of(exc.value)["details"]["causes"][0]["field"] == "data[a/b]"
