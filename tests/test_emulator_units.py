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


# JSON patch as evanphx/json-patch v4 applies it (the API server's library): each row was checked
# against that library; the quirks are what it does, not what RFC 6902 says.
DOC: dict[str, Any] = {"a": {"b": [1, 2], "c/d": "x", "e~f": "y", "n": None}, "z": 1}


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        pytest.param([{"op": "add", "path": "/a/b/-", "value": 3}], {"b": [1, 2, 3]}, id="append"),
        pytest.param([{"op": "add", "path": "/a/b/0", "value": 0}], {"b": [0, 1, 2]}, id="insert"),
        pytest.param([{"op": "add", "path": "/a/b/2", "value": 3}], {"b": [1, 2, 3]}, id="at-end"),
        pytest.param(
            [{"op": "add", "path": "/a/b/-1", "value": 3}], {"b": [1, 2, 3]}, id="add-neg"
        ),
        pytest.param([{"op": "add", "path": "/a/b/01", "value": 3}], {"b": [1, 3, 2]}, id="atoi"),
        pytest.param([{"op": "add", "path": "/a/k"}], {"k": None}, id="no-value-is-null"),
        pytest.param([{"op": "remove", "path": "/a/b/0"}], {"b": [2]}, id="remove-item"),
        pytest.param([{"op": "remove", "path": "/a/b/-2"}], {"b": [2]}, id="remove-neg"),
        pytest.param([{"op": "remove", "path": "/a/c~1d"}], {"c/d": None}, id="tilde-1"),
        pytest.param(
            [{"op": "replace", "path": "/a/e~0f", "value": "z"}], {"e~f": "z"}, id="tilde-0"
        ),
        pytest.param(
            [{"op": "replace", "path": "/a/new", "value": 1}], {"new": 1}, id="replace-adds"
        ),
        pytest.param([{"op": "add", "path": "x/a/k", "value": 1}], {"k": 1}, id="first-token"),
        pytest.param(
            [{"op": "move", "from": "/a/b/1", "path": "/a/b/0"}], {"b": [2, 1]}, id="move"
        ),
        pytest.param(
            [{"op": "copy", "from": "/a/b", "path": "/a/k"}], {"k": [1, 2], "b": [1, 2]}, id="copy"
        ),
        pytest.param(
            [{"op": "copy", "from": "/a/zz", "path": "/a/k"}], {"k": None}, id="copy-missing"
        ),
        pytest.param(
            [{"op": "test", "path": "/a/b", "value": [1, 2]}, {"op": "remove", "path": "/a/b"}],
            {"b": None},
            id="test-then-remove",
        ),
        pytest.param(
            [{"op": "test", "path": "/a/zz", "value": None}], {"b": [1, 2]}, id="test-absent-null"
        ),
        pytest.param(
            [{"op": "test", "path": "/a", "value": {**DOC["a"], "b": [1, 2]}}],
            {"b": [1, 2]},
            id="test-object",
        ),
    ],
)
def test_json_patch(ops: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    result = patch.json_patch(DOC, ops)
    for key, value in expected.items():
        if value is None:
            assert result["a"].get(key) is None
        else:
            assert result["a"][key] == value
    assert DOC["a"]["b"] == [1, 2]  # the input is left alone


@pytest.mark.parametrize(
    ("op", "message"),
    [
        pytest.param(
            {"op": "add", "path": "/x/y", "value": 1},
            'add operation does not apply: doc is missing path: "/x/y": missing value',
            id="add-no-parent",
        ),
        pytest.param(
            {"op": "add", "path": "/a/b/5", "value": 1},
            "error in add for path: '/a/b/5': Unable to access invalid index: 5: invalid index "
            "referenced",
            id="add-past-end",
        ),
        pytest.param(
            {"op": "add", "path": "/a/b/x", "value": 1},
            "error in add for path: '/a/b/x': value was not a proper array index: 'x': "
            'strconv.Atoi: parsing "x": invalid syntax',
            id="add-not-an-index",
        ),
        pytest.param(
            {"op": "remove", "path": "/a/zz"},
            "error in remove for path: '/a/zz': Unable to remove nonexistent key: zz: missing "
            "value",
            id="remove-missing",
        ),
        pytest.param(
            {"op": "replace", "path": "/a/b/2", "value": 1},
            "replace operation does not apply: doc is missing key: /a/b/2: missing value",
            id="replace-past-end",
        ),
        pytest.param(
            {"op": "replace", "path": "", "value": 1},
            "replace operation value must be object or array: %!w(<nil>)",
            id="replace-root-scalar",
        ),
        pytest.param(
            {"op": "move", "from": "/a/zz", "path": "/a/k"},
            "error in move for path: 'zz': Unable to remove nonexistent key: zz: missing value",
            id="move-missing",
        ),
        pytest.param(
            {"op": "test", "path": "/a/c~1d", "value": "nope"},
            "testing value /a/c~1d failed: test failed",
            id="test-fails",
        ),
        pytest.param(
            {"op": "test", "path": "/z", "value": 1.0},
            "testing value /z failed: test failed",
            id="test-compares-json-text",
        ),
        pytest.param(
            {"op": "test", "path": "/a", "value": {**DOC["a"], "more": 1}},
            "testing value /a failed: test failed",
            id="test-object-more-members",
        ),
        pytest.param({"op": "frob", "path": "/a"}, "Unexpected kind: frob", id="unknown-op"),
        pytest.param({"op": 1, "path": "/a"}, "Unexpected kind: unknown", id="op-not-a-string"),
        pytest.param(
            {"op": "add", "value": 1},
            "add operation failed to decode path: missing value",
            id="add-no-path",
        ),
        pytest.param(
            {"op": "test", "value": 1},
            "test operation failed to decode path: operation missing path field: missing value",
            id="test-no-path",
        ),
        pytest.param(
            {"op": "copy", "from": 5, "path": "/a/k"},
            "copy operation failed to decode from: json: cannot unmarshal number into Go value "
            "of type string",
            id="from-not-a-string",
        ),
    ],
)
def test_json_patch_errors(op: dict[str, Any], message: str) -> None:
    with pytest.raises(patch.PatchError) as caught:
        patch.json_patch(DOC, [op])
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("document", "go_type", "message"),
    [
        pytest.param(
            {"op": "add"},
            "jsonpatch.Patch",
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
            id="not-a-list",
        ),
        pytest.param(
            [1],
            "jsonpatch.Patch",
            "json: cannot unmarshal number into Go value of type jsonpatch.Operation",
            id="element-not-an-object",
        ),
        pytest.param(
            "x",
            "[]handlers.jsonPatchOp",
            "json: cannot unmarshal string into Go value of type []handlers.jsonPatchOp",
            id="strict-not-a-list",
        ),
        pytest.param(
            [{"op": "add", "path": 5}],
            "[]handlers.jsonPatchOp",
            "json: cannot unmarshal number into Go struct field jsonPatchOp.path of type string",
            id="strict-path-not-a-string",
        ),
    ],
)
def test_json_patch_documents_that_do_not_decode(document: Any, go_type: str, message: str) -> None:
    with pytest.raises(patch.PatchFormatError) as caught:
        patch.decode_json_patch(document, go_type=go_type)
    assert str(caught.value) == message


def test_json_patch_null_document_is_no_operations() -> None:
    assert patch.decode_json_patch(None) == []
    assert patch.decode_json_patch([None, {"path": 5}]) == [None, {"path": 5}]


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
