"""PodView decoding (SPEC 5.3), cocoon-pod and pool rules (5.2), tolerant Node/Pod list views."""

from __future__ import annotations

from typing import Any

import pytest

from common.pod import (
    NodeView,
    PodDecodeError,
    PodSummary,
    PodView,
    decode_pod,
    is_cocoon_pod,
    nodes_from_json,
    pods_from_json,
    pool_of,
)

COCOON_TOLERATION = {"key": "virtual-kubelet.io/provider", "operator": "Exists"}


def pod(metadata: Any = None, spec: Any = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod"}
    if metadata is not None:
        obj["metadata"] = metadata
    if spec is not None:
        obj["spec"] = spec
    return obj


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        pytest.param(None, "object is missing or null", id="null-object"),
        pytest.param("x", "object is not a JSON object", id="string-object"),
        pytest.param([], "object is not a JSON object", id="list-object"),
        pytest.param({"spec": "x"}, "object.spec: want object, got string", id="string-spec"),
        pytest.param(
            {"metadata": 1}, "object.metadata: want object, got number 1", id="number-metadata"
        ),
        pytest.param(
            {"metadata": None}, "object.metadata: want object, got null", id="null-metadata"
        ),
        pytest.param(
            pod(spec={"tolerations": "x"}),
            "object.spec.tolerations: want array, got string",
            id="tol-str",
        ),
        pytest.param(
            pod(spec={"tolerations": ["x"]}),
            "object.spec.tolerations[0]: want object, got string",
            id="toleration-not-object",
        ),
        pytest.param(
            pod(spec={"tolerations": [{"key": "k", "value": 1}]}),
            "object.spec.tolerations[0].value: want string, got number 1",
            id="toleration-value-number",
        ),
        pytest.param(
            pod(metadata={"name": 5}),
            "object.metadata.name: want string, got number 5",
            id="name-number",
        ),
        pytest.param(
            pod(metadata={"generateName": True}),
            "object.metadata.generateName: want string, got bool",
            id="generate-name-bool",
        ),
        pytest.param(
            pod(metadata={"namespace": []}),
            "object.metadata.namespace: want string, got array",
            id="namespace-list",
        ),
        pytest.param(
            pod(spec={"nodeName": 1}),
            "object.spec.nodeName: want string, got number 1",
            id="node-name",
        ),
        pytest.param(
            pod(metadata={"labels": {"a": 1}}),
            "object.metadata.labels.a: want string, got number 1",
            id="label-value-number",
        ),
        pytest.param(
            pod(metadata={"annotations": "x"}),
            "object.metadata.annotations: want object, got string",
            id="annotations-string",
        ),
        pytest.param(
            pod(spec={"nodeSelector": None}),
            "object.spec.nodeSelector: want object, got null",
            id="node-selector-null",
        ),
        pytest.param(
            pod(metadata={"ownerReferences": {"kind": "ReplicaSet"}}),
            "object.metadata.ownerReferences: want array, got object",
            id="owner-refs-object",
        ),
        pytest.param(
            pod(metadata={"ownerReferences": [{"kind": "ReplicaSet", "name": 3}]}),
            "object.metadata.ownerReferences[0].name: want string, got number 3",
            id="owner-ref-name-number",
        ),
    ],
)
def test_undecodable(obj: Any, reason: str) -> None:
    with pytest.raises(PodDecodeError) as err:
        PodView.decode(obj)
    assert err.value.reason == reason
    assert "\n" not in err.value.reason
    assert isinstance(decode_pod(obj), PodDecodeError)


def test_decodes_the_fields_read() -> None:
    view = PodView.decode(
        pod(
            metadata={
                "name": "web-0",
                "generateName": "web-",
                "namespace": "ns",
                "labels": {"app": "web"},
                "annotations": {"a": "b"},
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u"}
                ],
                "creationTimestamp": None,
            },
            spec={
                "nodeName": "n1",
                "nodeSelector": {"cocoonstack.io/pool": "gpu"},
                "tolerations": [{**COCOON_TOLERATION, "tolerationSeconds": 30}],
                "containers": [{"name": "c", "image": "x"}],
            },
        )
    )
    assert view.name == "web-0"
    assert view.generate_name == "web-"
    assert view.namespace == "ns"
    assert view.node_name == "n1"
    assert view.labels == {"app": "web"}
    assert view.annotations == {"a": "b"}
    assert view.annotations_present
    assert view.node_selector == {"cocoonstack.io/pool": "gpu"}
    assert [(t.key, t.operator) for t in view.tolerations] == [
        ("virtual-kubelet.io/provider", "Exists")
    ]
    assert [(r.kind, r.name) for r in view.owner_references] == [("StatefulSet", "web")]


@pytest.mark.parametrize(
    ("metadata", "present"),
    [
        pytest.param({}, False, id="absent"),
        pytest.param({"annotations": None}, False, id="null"),
        pytest.param({"annotations": {}}, True, id="empty-map-counts-as-present"),
        pytest.param({"annotations": {"k": "v"}}, True, id="non-empty"),
    ],
)
def test_annotations_present(metadata: dict[str, Any], present: bool) -> None:
    assert PodView.decode(pod(metadata=metadata)).annotations_present is present


def test_null_labels_and_missing_sections_decode_empty() -> None:
    view = PodView.decode({"metadata": {"labels": None}})
    assert view.labels == {}
    assert view.tolerations == ()
    assert view.name == ""


@pytest.mark.parametrize(
    ("tolerations", "cocoon"),
    [
        pytest.param([COCOON_TOLERATION], True, id="exists"),
        pytest.param(
            [{"key": "virtual-kubelet.io/provider", "operator": "Equal", "value": "x"}],
            True,
            id="any-operator-value",
        ),
        pytest.param([{"operator": "Exists"}], False, id="wildcard-is-not-cocoon"),
        pytest.param([{"key": "virtual-kubelet.io/Provider"}], False, id="key-exact-case"),
        pytest.param([], False, id="none"),
    ],
)
def test_is_cocoon_pod(tolerations: list[dict[str, str]], cocoon: bool) -> None:
    assert is_cocoon_pod(PodView.decode(pod(spec={"tolerations": tolerations}))) is cocoon


@pytest.mark.parametrize(
    ("selector", "labels", "annotations", "pool"),
    [
        pytest.param(
            {"cocoonstack.io/pool": "a"}, {"cocoonstack.io/pool": "b"}, None, "a", id="ns"
        ),
        pytest.param(
            {"cocoonstack.io/pool": ""}, {"cocoonstack.io/pool": "b"}, None, "b", id="lbl"
        ),
        pytest.param({}, None, {"cocoonstack.io/pool": "c"}, "c", id="annotation"),
        pytest.param(
            {}, {"cocoonstack.io/pool": ""}, {"cocoonstack.io/pool": ""}, "default", id="e"
        ),
        pytest.param({}, None, None, "default", id="default"),
        pytest.param({}, None, {"cocoonstack.io/pool": "GPU_Pool"}, "GPU_Pool", id="invalid-kept"),
    ],
)
def test_pool_of(
    selector: dict[str, str],
    labels: dict[str, str] | None,
    annotations: dict[str, str] | None,
    pool: str,
) -> None:
    view = PodView.decode(
        pod(
            metadata={"labels": labels, "annotations": annotations}, spec={"nodeSelector": selector}
        )
    )
    assert pool_of(view) == pool


def node_json(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "metadata": {"name": "cocoon-a", "labels": {"cocoonstack.io/pool": "default"}},
        "spec": {"taints": [{"key": "virtual-kubelet.io/provider", "value": "cocoon",
                             "effect": "NoSchedule"}]},
        "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                  {"type": "Ready", "status": "True"}]},
    }  # fmt: skip
    raw.update(over)
    return raw


def test_node_view_reads_kubernetes_json() -> None:
    node = NodeView.model_validate(node_json())
    assert node.name == "cocoon-a"
    assert node.labels == {"cocoonstack.io/pool": "default"}
    assert node.ready == "True"
    assert not node.unschedulable
    assert not node.deleting
    assert [(t.key, t.value, t.effect) for t in node.taints] == [
        ("virtual-kubelet.io/provider", "cocoon", "NoSchedule")
    ]


@pytest.mark.parametrize(
    ("raw", "check"),
    [
        pytest.param(
            node_json(spec={"unschedulable": True}), lambda n: n.unschedulable, id="cordoned"
        ),
        pytest.param(
            node_json(metadata={"name": "x", "deletionTimestamp": "2024-01-01T00:00:00Z"}),
            lambda n: n.deleting,
            id="deleting",
        ),
        pytest.param(node_json(status={}), lambda n: n.ready == "", id="no-conditions"),
        pytest.param(
            node_json(status={"conditions": "x"}), lambda n: n.ready == "", id="odd-conditions"
        ),
        pytest.param(
            node_json(status={"conditions": [7, {"type": "Ready", "status": "False"}]}),
            lambda n: n.ready == "False",
            id="odd-condition-item-skipped",
        ),
        pytest.param(
            node_json(spec={"taints": ["x", {"key": "k", "effect": "NoExecute"}]}),
            lambda n: [t.key for t in n.taints] == ["k"],
            id="odd-taint-skipped",
        ),
        pytest.param(
            node_json(metadata={"name": "x", "labels": {"a": 1}}),
            lambda n: n.labels == {} and n.name == "x",
            id="odd-labels-empty",
        ),
        pytest.param(node_json(metadata="x"), lambda n: n.name == "", id="odd-metadata"),
    ],
)
def test_node_view_is_tolerant(raw: dict[str, Any], check: Any) -> None:
    assert check(NodeView.model_validate(raw))


def test_list_helpers_skip_junk() -> None:
    assert [n.name for n in nodes_from_json([node_json(), "x", {"metadata": {}}])] == ["cocoon-a"]
    pods = pods_from_json(
        [
            {
                "metadata": {
                    "name": "p",
                    "namespace": "ns",
                    "annotations": {"vm.cocoonstack.io/name": "vk-ns-demo-0"},
                },
                "spec": {"nodeName": "cocoon-a"},
                "status": {"phase": "Running"},
            },
            None,
            {"metadata": {"namespace": "ns"}},
        ]
    )
    assert pods == [
        PodSummary(
            name="p", namespace="ns", phase="Running", node_name="cocoon-a", vm_name="vk-ns-demo-0"
        )
    ]


@pytest.mark.parametrize(
    ("phase", "live"),
    [
        pytest.param("Pending", True, id="pending"),
        pytest.param("Running", True, id="running"),
        pytest.param("Unknown", True, id="unknown"),
        pytest.param("", True, id="no-status-yet"),
        pytest.param("Succeeded", False, id="succeeded"),
        pytest.param("Failed", False, id="failed"),
    ],
)
def test_pod_summary_live(phase: str, live: bool) -> None:
    assert PodSummary(name="p", namespace="ns", phase=phase).live is live
