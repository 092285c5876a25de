"""The emulator's pure parts as tables: selectors, patch formats, validation messages."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kube_emulator import patch, selectors, validation
from tests.kube_emulator.resources import Registry
from tests.kube_emulator.store import Store

# -- label selectors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        pytest.param("a=b", {"a": "b"}, True, id="eq"),
        pytest.param("a=b", {"a": "c"}, False, id="eq-miss"),
        pytest.param("a!=b", {}, True, id="neq-absent"),
        pytest.param("a in (x, y)", {"a": "y"}, True, id="in"),
        pytest.param("a notin (x)", {}, True, id="notin-absent"),
        pytest.param("!a", {"a": ""}, False, id="not-exists"),
        pytest.param("a", {"a": ""}, True, id="exists-empty-value"),
        pytest.param("a=", {"a": ""}, True, id="eq-empty"),
        pytest.param("n>3", {"n": "4"}, True, id="gt"),
        pytest.param("n>3", {"n": "x"}, False, id="gt-not-a-number"),
        pytest.param("n<3", {}, False, id="lt-absent"),
        pytest.param(
            "example.com/k=v,b", {"example.com/k": "v", "b": "1"}, True, id="prefixed-and"
        ),
    ],
)
def test_label_selector(text: str, labels: dict[str, str], expected: bool) -> None:
    assert selectors.parse_label_selector(text).matches(labels) is expected


@pytest.mark.parametrize(
    "text", ["a in (b", "a notin", "a >", "a > b", "(a)", "a=b=c", "a/b/c=d", "a,"]
)
def test_label_selector_errors(text: str) -> None:
    with pytest.raises(selectors.SelectorError):
        selectors.parse_label_selector(text)


def test_field_selector_escapes_and_ops() -> None:
    sel = selectors.parse_field_selector(r"metadata.name=a\,b,spec.nodeName!=n1", "", "pods")
    assert sel.matches({"metadata": {"name": "a,b"}, "spec": {"nodeName": "n2"}})
    assert not sel.matches({"metadata": {"name": "a,b"}, "spec": {"nodeName": "n1"}})
    with pytest.raises(selectors.SelectorError, match=r"field label not supported: spec\.nodeName"):
        selectors.parse_field_selector("spec.nodeName=x", "", "configmaps")


def test_label_selector_string_of_a_workload_selector() -> None:
    sel = {
        "matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [{"key": "c", "operator": "NotIn", "values": ["y", "x"]}],
    }
    assert selectors.label_selector_string(sel) == "a=1,b=2,c notin (x,y)"


# -- patches ------------------------------------------------------------------------------------


def test_merge_patch_nested_null_and_replace_list() -> None:
    doc = {"a": {"b": 1, "c": 2}, "l": [1, 2]}
    assert patch.merge_patch(doc, {"a": {"b": None}, "l": [3]}) == {"a": {"c": 2}, "l": [3]}


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        pytest.param(
            [{"op": "add", "path": "/l/-", "value": 3}],
            {"l": [1, 2, 3], "m": {"k": "v"}},
            id="append",
        ),
        pytest.param(
            [{"op": "add", "path": "/l/0", "value": 0}],
            {"l": [0, 1, 2], "m": {"k": "v"}},
            id="insert",
        ),
        pytest.param([{"op": "remove", "path": "/m/k"}], {"l": [1, 2], "m": {}}, id="remove"),
        pytest.param(
            [{"op": "move", "from": "/m/k", "path": "/m/j"}],
            {"l": [1, 2], "m": {"j": "v"}},
            id="move",
        ),
        pytest.param(
            [{"op": "copy", "from": "/l/0", "path": "/m/c"}],
            {"l": [1, 2], "m": {"k": "v", "c": 1}},
            id="copy",
        ),
        pytest.param(
            [{"op": "add", "path": "/m/a~1b", "value": 1}],
            {"l": [1, 2], "m": {"k": "v", "a/b": 1}},
            id="escape",
        ),
    ],
)
def test_json_patch(ops: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    assert patch.json_patch({"l": [1, 2], "m": {"k": "v"}}, ops) == expected


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "remove", "path": "/missing"}],
        [{"op": "replace", "path": "/missing", "value": 1}],
        [{"op": "add", "path": "/l/5", "value": 1}],
        [{"op": "test", "path": "/l/0", "value": 9}],
    ],
)
def test_json_patch_that_does_not_apply(ops: list[dict[str, Any]]) -> None:
    with pytest.raises(patch.PatchError):
        patch.json_patch({"l": [1]}, ops)


def test_strategic_merge_directives() -> None:
    doc = {
        "spec": {
            "containers": [
                {"name": "a", "image": "1", "ports": [{"containerPort": 80}]},
                {"name": "b", "image": "1"},
            ],
            "tolerations": [{"key": "x"}],
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
        },
        "metadata": {"finalizers": ["f1"]},
    }
    out = patch.strategic_merge(
        doc,
        {
            "spec": {
                "containers": [
                    {"name": "a", "ports": [{"containerPort": 81}]},
                    {"name": "b", "$patch": "delete"},
                    {"name": "c", "image": "2"},
                ],
                "tolerations": [{"key": "y"}],
                "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            },
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["f1"], "finalizers": ["f2"]},
        },
    )
    # without $setElementOrder a new element leads, as strategicpatch.normalizeElementOrder does
    assert out["spec"]["containers"] == [
        {"name": "a", "image": "1", "ports": [{"containerPort": 81}, {"containerPort": 80}]},
        {"name": "c", "image": "2"},
    ]
    assert out["spec"]["tolerations"] == [{"key": "y"}]
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    assert out["metadata"]["finalizers"] == ["f2"]
    assert patch.strategic_merge(doc, {"spec": {"$patch": "replace", "x": 1}})["spec"] == {"x": 1}


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("a", True),
        ("a.b-c_d", True),
        (".a", True),
        ("..a", False),
        (".", False),
        ("a/b", False),
        ("k" * 254, False),
    ],
)
def test_config_keys(key: str, ok: bool) -> None:
    assert (validation.config_key_errors(key) == []) is ok


def test_configmap_size_counts_values_only() -> None:
    """ValidateConfigMap sums the values' lengths (keys are free), as kube-apiserver v1.37."""
    limit = validation.MAX_CONFIGMAP_BYTES
    assert validation.validate_configmap({"data": {"long-key": "x" * limit}}, None) == []
    (cause,) = validation.validate_configmap({"data": {"a": "x" * limit, "b": "x"}}, None)
    assert cause.reason == "FieldValueTooLong"
    assert cause.field == "[]"
    assert cause.text() == "[]: Too long: may not be more than 1048576 bytes"


def test_invalid_message_shape() -> None:
    (cause,) = validation.validate_object_meta(
        {"name": "Bad", "namespace": "ns"},
        namespaced=True,
        name_check=validation.dns1123_subdomain_errors,
    )
    assert cause.text().startswith(
        'metadata.name: Invalid value: "Bad": a lowercase RFC 1123 subdomain'
    )


def test_pod_defaults_pull_policy() -> None:
    pod: dict[str, Any] = {
        "spec": {
            "containers": [
                {"name": "a", "image": "r/x:1"},
                {"name": "b", "image": "x"},
                {"name": "c", "image": "x@sha256:0"},
            ]
        }
    }
    validation.default_pod(pod)
    assert [c["imagePullPolicy"] for c in pod["spec"]["containers"]] == [
        "IfNotPresent",
        "Always",
        "IfNotPresent",
    ]


# -- store --------------------------------------------------------------------------------------


def test_store_hands_out_copies_and_counts_versions() -> None:
    store = Store(Registry())
    created = store.create(
        "", "configmaps", {"metadata": {"name": "a", "namespace": "n"}, "data": {}}
    )
    copy = store.get("", "configmaps", "n", "a")
    assert copy == created
    assert copy is not created
    copy["data"]["x"] = "1"
    assert store.get("", "configmaps", "n", "a")["data"] == {}  # type: ignore[index]
    assert [o["metadata"]["name"] for o in store.list("", "configmaps")] == ["a"]
    before = store.resource_version
    store.update(
        "",
        "configmaps",
        {"metadata": {"name": "a", "namespace": "n"}},
        created["metadata"]["resourceVersion"],
    )
    assert store.resource_version == before + 1
    assert [e.type for e in store.events_after(before - 1) or []] == ["ADDED", "MODIFIED"]
    store.compact()
    assert store.events_after(before) is None


def test_audit_annotation_keys_are_filed_as_the_api_server_files_them() -> None:
    from tests.kube_emulator.admission import _audit_annotations

    filed = _audit_annotations(
        "pods.mutate.cocoonstack.io",
        {
            "vm-name": "vk-a-b-0",
            "a/b": "two slashes in all",  # dropped: checkKeyFormat wants exactly one `/`
            "-dash": "not alphanumeric at the start",
            "x" * 64: "name part over 63",
            "slot": 0,  # not a string
        },
    )
    assert filed == {"pods.mutate.cocoonstack.io/vm-name": "vk-a-b-0"}
