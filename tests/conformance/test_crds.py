"""CustomResourceDefinitions and custom resources.

Upstream: k8s.io/apiextensions-apiserver (customresource_handler.go, the structural schema
validation and pruning in pkg/apiserver/schema, the CR strategy's status and generation rules).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from tests.conformance.helpers import body_of, raw, wait_for

GROUP = "conformance.example.com"


@dataclass
class Crd:
    plural: str
    kind: str

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"

    def obj(self, name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/v1",
            "kind": self.kind,
            "metadata": {"name": name},
            "spec": spec or {},
        }


def crd_body(plural: str, kind: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "replicas": {"type": "integer", "minimum": 0},
                    "color": {"type": "string", "enum": ["red", "blue"]},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            },
            "status": {
                "type": "object",
                "properties": {"ready": {"type": "boolean"}, "replicas": {"type": "integer"}},
            },
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": plural,
                "singular": plural[:-1],
                "kind": kind,
                "listKind": kind + "List",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                        },
                    },
                }
            ],
        },
    }


def _served(api: client.ApiClient, plural: str) -> bool:
    resp = raw(api, "GET", f"/apis/{GROUP}/v1")
    return resp.status == 200 and any(r["name"] == plural for r in resp.json()["resources"])


@pytest.fixture
def crd(apiext: client.ApiextensionsV1Api, api: client.ApiClient) -> Iterator[Crd]:
    suffix = uuid.uuid4().hex[:8]
    made = Crd(f"widgets{suffix}", f"Widget{suffix}")
    apiext.create_custom_resource_definition(crd_body(made.plural, made.kind))
    try:
        wait_for(lambda: _served(api, made.plural), "the custom resource to be served")
        yield made
    finally:
        with contextlib.suppress(client.ApiException):
            apiext.delete_custom_resource_definition(made.name)


def test_crd_is_established(apiext: client.ApiextensionsV1Api, crd: Crd) -> None:
    """A valid CRD gets NamesAccepted and Established conditions and its acceptedNames."""

    def established() -> Any:
        got = apiext.read_custom_resource_definition(crd.name)
        conditions = {c.type: c.status for c in (got.status.conditions or [])}
        return got if conditions.get("Established") == "True" else None

    got = wait_for(established, "Established")
    assert got.status.accepted_names.kind == crd.kind
    assert got.status.stored_versions == ["v1"]


def test_custom_resource_discovery(api: client.ApiClient, crd: Crd) -> None:
    """The group version lists the plural with its kind and the status and scale subresources."""
    resources = {r["name"]: r for r in raw(api, "GET", f"/apis/{GROUP}/v1").json()["resources"]}
    assert resources[crd.plural]["kind"] == crd.kind
    assert resources[crd.plural]["namespaced"] is True
    assert f"{crd.plural}/status" in resources
    assert f"{crd.plural}/scale" in resources


def test_custom_resource_crud(custom: client.CustomObjectsApi, crd: Crd, ns: str) -> None:
    """Create, get, list and delete a custom resource; generation starts at 1."""
    created = custom.create_namespaced_custom_object(
        GROUP, "v1", ns, crd.plural, crd.obj("w1", {"replicas": 1})
    )
    assert created["metadata"]["generation"] == 1
    assert created["metadata"]["uid"]
    got = custom.get_namespaced_custom_object(GROUP, "v1", ns, crd.plural, "w1")
    assert got["spec"] == {"replicas": 1}
    listed = custom.list_namespaced_custom_object(GROUP, "v1", ns, crd.plural)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["w1"]
    assert listed["kind"] == crd.kind + "List"
    custom.delete_namespaced_custom_object(GROUP, "v1", ns, crd.plural, "w1")
    with pytest.raises(client.ApiException) as exc:
        custom.get_namespaced_custom_object(GROUP, "v1", ns, crd.plural, "w1")
    assert exc.value.status == 404
    assert body_of(exc.value)["message"] == f'{crd.plural}.{GROUP} "w1" not found'


@pytest.mark.parametrize(
    ("spec", "fields"),
    [
        # the scale subresource reads .spec.replicas and checks it again (ValidateScaleSpec)
        pytest.param({"replicas": "three"}, ["spec.replicas", ".spec.replicas"], id="type"),
        pytest.param({"replicas": -1}, ["spec.replicas", ".spec.replicas"], id="minimum"),
        pytest.param({"color": "green"}, ["spec.color"], id="enum"),
    ],
)
def test_schema_violations_are_422(
    custom: client.CustomObjectsApi, crd: Crd, ns: str, spec: dict[str, Any], fields: list[str]
) -> None:
    """The structural schema validates custom resources: type, minimum, enum give 422 Invalid."""
    with pytest.raises(client.ApiException) as exc:
        custom.create_namespaced_custom_object(GROUP, "v1", ns, crd.plural, crd.obj("bad", spec))
    assert exc.value.status == 422
    body = body_of(exc.value)
    assert body["reason"] == "Invalid"
    assert body["details"]["kind"] == crd.kind
    assert [c["field"] for c in body["details"]["causes"]] == fields
    scale_messages = {
        "three": "Invalid value: 0: .spec.replicas accessor error: three is of the type string, "
        "expected int64",
        -1: "Invalid value: -1: should be a non-negative integer",
    }
    if "replicas" in spec:
        assert body["details"]["causes"][-1]["message"] == scale_messages[spec["replicas"]]


def test_unknown_fields_are_pruned(custom: client.CustomObjectsApi, crd: Crd, ns: str) -> None:
    """Fields the schema does not name are dropped (not under preserve-unknown-fields)."""
    spec = {"replicas": 1, "bogus": True, "free": {"anything": {"goes": 1}}}
    created = custom.create_namespaced_custom_object(
        GROUP, "v1", ns, crd.plural, crd.obj("p", spec)
    )
    assert created["spec"] == {"replicas": 1, "free": {"anything": {"goes": 1}}}


def test_put_needs_a_resource_version(custom: client.CustomObjectsApi, crd: Crd, ns: str) -> None:
    """Custom resources do not allow unconditional update: PUT without resourceVersion is 422."""
    custom.create_namespaced_custom_object(GROUP, "v1", ns, crd.plural, crd.obj("r"))
    with pytest.raises(client.ApiException) as exc:
        custom.replace_namespaced_custom_object(
            GROUP, "v1", ns, crd.plural, "r", crd.obj("r", {"replicas": 2})
        )
    assert exc.value.status == 422
    assert body_of(exc.value)["details"]["causes"][0]["field"] == "metadata.resourceVersion"


def test_strategic_merge_is_unsupported(
    api: client.ApiClient, custom: client.CustomObjectsApi, crd: Crd, ns: str
) -> None:
    """Custom resources have no patch strategies: strategic merge patch is 415."""
    custom.create_namespaced_custom_object(GROUP, "v1", ns, crd.plural, crd.obj("s"))
    resp = raw(
        api,
        "PATCH",
        f"/apis/{GROUP}/v1/namespaces/{ns}/{crd.plural}/s",
        body={"spec": {"replicas": 2}},
        content_type="application/strategic-merge-patch+json",
    )
    assert resp.status == 415
    resp = raw(
        api,
        "PATCH",
        f"/apis/{GROUP}/v1/namespaces/{ns}/{crd.plural}/s",
        body={"spec": {"replicas": 2}},
        content_type="application/merge-patch+json",
    )
    assert resp.status == 200
    assert resp.json()["spec"] == {"replicas": 2}


def test_status_subresource_splits_spec_and_status(
    custom: client.CustomObjectsApi, crd: Crd, ns: str
) -> None:
    """With a status subresource: create and main updates ignore status, /status ignores spec;
    generation counts spec changes only."""
    obj = crd.obj("st", {"replicas": 1})
    obj["status"] = {"ready": True}
    created = custom.create_namespaced_custom_object(GROUP, "v1", ns, crd.plural, obj)
    assert "status" not in created
    created["status"] = {"ready": True, "replicas": 1}
    created["spec"] = {"replicas": 5}
    out = custom.replace_namespaced_custom_object_status(GROUP, "v1", ns, crd.plural, "st", created)
    assert out["status"] == {"ready": True, "replicas": 1}
    assert out["spec"] == {"replicas": 1}
    assert out["metadata"]["generation"] == 1
    out["status"] = {"ready": False}
    out["spec"] = {"replicas": 2}
    again = custom.replace_namespaced_custom_object(GROUP, "v1", ns, crd.plural, "st", out)
    assert again["status"] == {"ready": True, "replicas": 1}
    assert again["spec"] == {"replicas": 2}
    assert again["metadata"]["generation"] == 2


def test_custom_resource_scale(custom: client.CustomObjectsApi, crd: Crd, ns: str) -> None:
    """subresources.scale maps Scale.spec.replicas to specReplicasPath."""
    custom.create_namespaced_custom_object(
        GROUP, "v1", ns, crd.plural, crd.obj("sc", {"replicas": 2})
    )
    scale = custom.get_namespaced_custom_object_scale(GROUP, "v1", ns, crd.plural, "sc")
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 2
    custom.patch_namespaced_custom_object_scale(
        GROUP, "v1", ns, crd.plural, "sc", {"spec": {"replicas": 4}}
    )
    assert (
        custom.get_namespaced_custom_object(GROUP, "v1", ns, crd.plural, "sc")["spec"]["replicas"]
        == 4
    )


def test_deleting_the_crd_deletes_its_resources(
    apiext: client.ApiextensionsV1Api,
    custom: client.CustomObjectsApi,
    api: client.ApiClient,
    crd: Crd,
    ns: str,
) -> None:
    """Deleting a CRD removes its custom resources and stops serving the resource."""
    custom.create_namespaced_custom_object(GROUP, "v1", ns, crd.plural, crd.obj("doomed"))
    apiext.delete_custom_resource_definition(crd.name)
    wait_for(lambda: not _served(api, crd.plural), "the resource to go away")
    resp = raw(api, "GET", f"/apis/{GROUP}/v1/namespaces/{ns}/{crd.plural}/doomed")
    assert resp.status == 404


def test_crd_name_must_be_plural_dot_group(apiext: client.ApiextensionsV1Api) -> None:
    """ValidateCustomResourceDefinition: metadata.name must be <plural>.<group>."""
    body = crd_body("gadgets", "Gadget")
    body["metadata"]["name"] = "wrong.conformance.example.com"
    with pytest.raises(client.ApiException) as exc:
        apiext.create_custom_resource_definition(body)
    assert exc.value.status == 422
