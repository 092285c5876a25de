"""mutate decisions (SPEC 5): rows 1-8, slot allocation, bare pods, placement, patch.

`reserve` below plays the store's part of the plan_entry protocol (fetch what a Need names, call
again) against in-memory snapshots and logs each fetch, so tests also pin what gets listed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.decisions.mutate import (
    KEY_TOO_LONG_WARNING,
    NO_NAMESPACE_WARNING,
    REASON_CONFLICTS,
    REASON_DEADLINE,
    REASON_FULL,
    REASON_KEY_HELD,
    REASON_KEY_TOO_LONG,
    REASON_UNREACHABLE,
    Draft,
    Failed,
    Intent,
    Need,
    Skip,
    invalid_pool_warning,
    no_node_warning,
    not_reserved_warning,
    patch_ops,
    plan,
    plan_entry,
    reason_api_error,
    reserved_verdict,
    sticky_gone_warning,
    sticky_kept_warning,
)
from common.pod import NodeCondition, NodeView, PodSummary, PodView, Taint, decode_pod
from common.reservation import CONFIGMAP_DATA_LIMIT, Reservation, data_bytes, decode, encode
from common.verdict import Decision

NS = "ns"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=30)
RS = "demo-7b7c9d9d5f"
COCOON_TOLERATION = {"key": "virtual-kubelet.io/provider", "operator": "Exists"}
VK_TAINT = Taint(key="virtual-kubelet.io/provider", value="cocoon", effect="NoSchedule")


# --- builders ------------------------------------------------------------------------------------


def pod_json(
    name: str = "",
    *,
    generate_name: str = "",
    owner: tuple[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    node_name: str = "",
    cocoon: bool = True,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"namespace": NS}
    if name:
        metadata["name"] = name
    if generate_name:
        metadata["generateName"] = generate_name
    if owner:
        metadata["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "uid": "u"}]
    if annotations is not None:
        metadata["annotations"] = annotations
    if labels is not None:
        metadata["labels"] = labels
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "i"}]}
    if cocoon:
        spec["tolerations"] = [COCOON_TOLERATION]
    if node_name:
        spec["nodeName"] = node_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def intent(name: str = "", *, rng: random.Random | None = None, **kw: Any) -> Intent:
    out = plan("CREATE", "Pod", NS, "", PodView.decode(pod_json(name, **kw)), rng)
    assert isinstance(out, Intent), out
    return out


def demo_pod(name: str) -> Intent:
    return intent(name, owner=("ReplicaSet", RS))


def entry(
    pod: str,
    slot: int = 0,
    *,
    deploy: str = "demo",
    node: str = "",
    age_s: float = 60,
    missing: bool = False,
    ns: str = NS,
    pool: str = "default",
) -> str:
    vm = f"vk-{ns}-{deploy}-{slot}" if deploy else f"vk-{ns}-{pod}"
    return encode(
        Reservation(
            pool=pool,
            namespace=ns,
            deployment=deploy,
            slot=slot,
            vm_name=vm,
            pod=pod,
            node=node,
            updated_at=NOW - timedelta(seconds=age_s),
            missing_since=NOW - timedelta(seconds=10) if missing else None,
        )
    )


def live(name: str, *, vm: str = "", node: str = "", phase: str = "Running") -> PodSummary:
    return PodSummary(name=name, namespace=NS, phase=phase, node_name=node, vm_name=vm)


def node(name: str, *, ready: str = "True", unschedulable: bool = False) -> NodeView:
    return NodeView(
        name=name,
        unschedulable=unschedulable,
        conditions=(NodeCondition(type="Ready", status=ready),),
        taints=(VK_TAINT,),
    )


NODES = (node("cocoon-a"), node("cocoon-b"))


@dataclass
class Cluster:
    """Snapshots as the store would LIST them, and a log of what it listed."""

    pods: list[PodSummary] = field(default_factory=list)  # all namespaces
    nodes: tuple[NodeView, ...] = NODES
    listed: list[str] = field(default_factory=list)

    def namespace_pods(self) -> list[PodSummary]:
        self.listed.append(f"pods/{NS}")
        return [p for p in self.pods if p.namespace == NS]

    def node_pods(self, name: str) -> list[PodSummary]:
        self.listed.append(f"node/{name}")
        return [p for p in self.pods if p.node_name == name and p.live]


def reserve(
    it: Intent, entries: dict[str, str], cluster: Cluster, now: datetime = NOW
) -> Draft | Failed:
    """The store's side of the protocol, minus the ConfigMap I/O."""
    live_pods = cluster.namespace_pods() if it.needs_live_pods else None
    node_pods: dict[str, list[PodSummary]] = {}
    for _ in range(3):
        out = plan_entry(
            it,
            entries,
            live_pods=live_pods,
            nodes=cluster.nodes,
            node_pods=node_pods,
            now=now,
            window=WINDOW,
        )
        if not isinstance(out, Need):
            return out
        if out.live_pods:
            assert live_pods is None, "asked twice for the namespace's pods"
            live_pods = cluster.namespace_pods()
        for name in out.node_pods:
            assert name not in node_pods, "asked twice for a node's pods"
            node_pods[name] = cluster.node_pods(name)
    raise AssertionError("plan_entry kept asking")


def drafted(out: Draft | Failed) -> Draft:
    assert isinstance(out, Draft), out
    return out


# --- wire texts ----------------------------------------------------------------------------------


def test_warning_and_reason_texts() -> None:
    assert not_reserved_warning(REASON_DEADLINE) == (
        "cocoon-webhook: VM name not reserved (deadline exceeded); "
        "pod admitted without sticky placement"
    )
    assert [REASON_CONFLICTS, REASON_FULL, REASON_KEY_HELD, REASON_UNREACHABLE] == [
        "conflicts",
        "configmap full",
        "slot key held by another pod",
        "kubernetes API unreachable",
    ]
    assert reason_api_error(500) == "kubernetes API error 500"
    assert Failed(REASON_FULL).warning == not_reserved_warning("configmap full")
    assert invalid_pool_warning("GPU_Pool") == (
        'cocoon-webhook: VM name not reserved (invalid pool "GPU_Pool")'
    )
    assert KEY_TOO_LONG_WARNING == "cocoon-webhook: VM name not reserved (entry key too long)"
    assert REASON_KEY_TOO_LONG == "entry key too long"
    assert NO_NAMESPACE_WARNING == (
        "cocoon-webhook: VM name not reserved (request has no namespace)"
    )
    assert no_node_warning("lonely") == (
        'cocoon-webhook: no schedulable node in pool "lonely"; pod left to the scheduler'
    )
    assert sticky_gone_warning("cocoon-b", "default", "cocoon-a") == (
        'cocoon-webhook: sticky node "cocoon-b" left pool "default"; pinned to "cocoon-a"'
    )
    assert sticky_gone_warning("cocoon-b", "default", "") == (
        'cocoon-webhook: sticky node "cocoon-b" left pool "default"; pod left to the scheduler'
    )
    assert sticky_kept_warning("cocoon-b", "cordoned") == (
        'cocoon-webhook: sticky node "cocoon-b" is cordoned; kept because the VM disk lives there'
    )
    assert sticky_kept_warning("cocoon-b", "NotReady") == (
        'cocoon-webhook: sticky node "cocoon-b" is NotReady; kept because the VM disk lives there'
    )


# --- rows 1-8 ------------------------------------------------------------------------------------


LONG_DEPLOY = "d" * (253 - len("ns..0") + 1)


@pytest.mark.parametrize(
    ("operation", "kind", "namespace", "request_name", "obj", "decision", "warning"),
    [
        pytest.param("UPDATE", "Pod", NS, "", "x", Decision.ALLOW, None, id="1-not-create"),
        pytest.param("CREATE", "Binding", NS, "", pod_json("p"), Decision.ALLOW, None, id="2-kind"),
        pytest.param("CREATE", "Pod", NS, "", "x", Decision.ERROR, None, id="3-undecodable"),
        pytest.param(
            "CREATE", "Pod", NS, "", {"spec": {"tolerations": "x"}}, Decision.ERROR, None, id="3b"
        ),
        pytest.param(
            "CREATE", "Pod", NS, "", pod_json("p", cocoon=False), Decision.ALLOW, None, id="4"
        ),
        pytest.param(
            "CREATE",
            "Pod",
            NS,
            "",
            pod_json("p", owner=("CocoonSet", "set")),
            Decision.ALLOW,
            None,
            id="5-cocoonset-owner",
        ),
        pytest.param(
            "CREATE", "Pod", NS, "", pod_json("p", node_name="n"), Decision.ALLOW, None, id="6"
        ),
        pytest.param("CREATE", "Pod", NS, "", pod_json(), Decision.ALLOW, None, id="7-no-name"),
        pytest.param(
            "CREATE",
            "Pod",
            "",
            "",
            pod_json("p"),
            Decision.AFFINITY_FAILED,
            NO_NAMESPACE_WARNING,
            id="8-no-namespace",
        ),
        pytest.param(
            "CREATE",
            "Pod",
            NS,
            "",
            pod_json("p", annotations={"cocoonstack.io/pool": "GPU_Pool"}),
            Decision.AFFINITY_FAILED,
            'cocoon-webhook: VM name not reserved (invalid pool "GPU_Pool")',
            id="8-invalid-pool-example-13",
        ),
        pytest.param(
            "CREATE",
            "Pod",
            NS,
            "",
            pod_json("p", owner=("ReplicaSet", f"{LONG_DEPLOY}-abc")),
            Decision.AFFINITY_FAILED,
            KEY_TOO_LONG_WARNING,
            id="8-deployment-key-too-long",
        ),
        # Names the API server checks only after admission (a pod's), or never (an owner's):
        # a key it would refuse stops here rather than failing its whole batch's write.
        *[
            pytest.param(
                "CREATE", "Pod", namespace, "", obj, Decision.AFFINITY_FAILED,
                f'cocoon-webhook: VM name not reserved (invalid entry key "{key}")',
                id=f"8-invalid-key-{case}",
            )
            for case, namespace, obj, key in [
                ("pod-name", NS, pod_json("a b"), "ns._pod.a b"),
                ("unicode-pod-name", NS, pod_json("pé"), "ns._pod.pé"),
                ("owner-name", NS, pod_json("p", owner=("ReplicaSet", "x/y-abc")), "ns.x/y.0"),
                ("namespace", "a/b", pod_json("p"), "a/b._pod.p"),
                ("dot-dot-namespace", "..", pod_json("p"), "..._pod.p"),
            ]
        ],
    ],
)  # fmt: skip
def test_plan_skips(
    operation: str,
    kind: str,
    namespace: str,
    request_name: str,
    obj: Any,
    decision: Decision,
    warning: str | None,
) -> None:
    out = plan(operation, kind, namespace, request_name, decode_pod(obj))
    assert isinstance(out, Skip)
    assert (out.decision, out.warning) == (decision, warning)
    verdict = out.verdict()
    assert verdict.allowed
    assert verdict.patch == ()
    assert verdict.decision == decision
    assert verdict.warnings == ((warning,) if warning else ())


def test_invalid_key_warning_cuts_a_long_key() -> None:
    out = plan("CREATE", "Pod", NS, "", decode_pod(pod_json("p" * 60 + "_é")))
    assert isinstance(out, Skip)
    assert out.warning == (
        f'cocoon-webhook: VM name not reserved (invalid entry key "ns._pod.{"p" * 31}…")'
    )


def demo_like(deploy: str) -> Intent | Skip:
    return plan(
        "CREATE", "Pod", NS, "", PodView.decode(pod_json("p", owner=("ReplicaSet", f"{deploy}-x")))
    )


def test_deployment_key_at_the_limit_is_accepted() -> None:
    name = "d" * (253 - len("ns..0"))
    assert isinstance(demo_like(name), Intent)


@pytest.mark.parametrize(
    ("request_name", "obj", "expected"),
    [
        pytest.param(
            "",
            pod_json("alone"),
            {"pod_name": "alone", "generated": False, "deployment": None, "key": "ns._pod.alone"},
            id="bare-example-8",
        ),
        pytest.param(
            "from-request",
            pod_json(),
            {"pod_name": "from-request", "generated": False, "key": "ns._pod.from-request"},
            id="request-name",
        ),
        pytest.param(
            "from-request",
            pod_json(generate_name="g-"),
            {"pod_name": "from-request", "generated": False},
            id="request-name-before-generating",
        ),
        pytest.param(
            "ignored",
            pod_json("meta", generate_name="g-"),
            {"pod_name": "meta", "generated": False},
            id="metadata-name-first",
        ),
        pytest.param(
            "",
            pod_json("web-0", owner=("StatefulSet", "web")),
            {"deployment": None, "key": "ns._pod.web-0"},
            id="statefulset-is-bare-example-7",
        ),
        pytest.param(
            "",
            pod_json(generate_name=f"{RS}-", owner=("ReplicaSet", RS)),
            {"deployment": "demo", "key": None, "generated": True},
            id="replicaset-example-1",
        ),
        pytest.param(
            "",
            pod_json(generate_name="api.v1-abc12-", owner=("ReplicaSet", "api.v1-abc12")),
            {"deployment": "api.v1", "generated": True},
            id="dotted-deployment-example-10",
        ),
        pytest.param(
            "",
            pod_json("p", labels={"cocoonstack.io/pool": "gpu"}),
            {"pool": "gpu"},
            id="pool-from-label",
        ),
    ],
)
def test_plan_intents(request_name: str, obj: dict[str, Any], expected: dict[str, Any]) -> None:
    out = plan("CREATE", "Pod", NS, request_name, PodView.decode(obj), random.Random(1))
    assert isinstance(out, Intent)
    assert out.namespace == NS
    for attribute, value in expected.items():
        assert getattr(out, attribute) == value, attribute


def test_generated_name_follows_the_api_server_rule() -> None:
    it = intent(generate_name="job-x-", rng=random.Random(3))
    assert it.generated
    assert it.generated_name == it.pod_name
    assert it.pod_name.startswith("job-x-")
    assert len(it.pod_name) == len("job-x-") + 5
    assert it.key == f"ns._pod.{it.pod_name}"
    assert not it.needs_live_pods


# --- Deployment slots (SPEC 5.6) -----------------------------------------------------------------


@dataclass(frozen=True)
class SlotCase:
    entries: dict[str, str]
    pods: list[PodSummary]
    key: str
    node: str
    remove: tuple[str, ...] = ()
    write: bool = True
    pod: str = "demo-7b7c9d9d5f-new"


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(SlotCase({}, [], "ns.demo.0", "cocoon-a"), id="first-slot"),
        pytest.param(
            SlotCase(
                {
                    "ns.demo.0": entry("a", 0, node="cocoon-a"),
                    "ns.demo.1": entry("b", 1, node="cocoon-b"),
                },
                [live("a", node="cocoon-a"), live("b", node="cocoon-b")],
                "ns.demo.2",
                "cocoon-a",
            ),
            id="dense-next",
        ),
        pytest.param(
            SlotCase(
                {
                    "ns.demo.0": entry("a", 0, node="cocoon-a"),
                    "ns.demo.1": entry("gone", 1, node="cocoon-b"),
                    "ns.demo.2": entry("c", 2, node="cocoon-a"),
                },
                [live("a", node="cocoon-a"), live("c", node="cocoon-a")],
                "ns.demo.1",
                "cocoon-b",
            ),
            id="takeover-freed-slot-with-sticky-node-example-4",
        ),
        pytest.param(
            SlotCase(
                {"ns.demo.0": entry("gone", 0, node="cocoon-b", missing=True)},
                [],
                "ns.demo.0",
                "cocoon-b",
            ),
            id="takeover-marked-entry",
        ),
        pytest.param(
            SlotCase(
                {"ns.demo.0": entry("fresh", 0, node="cocoon-a", age_s=5)},
                [],
                "ns.demo.1",
                "cocoon-b",
            ),
            id="in-flight-claim-protected",
        ),
        pytest.param(
            SlotCase(
                {"ns.demo.0": entry("fresh", 0, node="cocoon-a", age_s=-3)},
                [],
                "ns.demo.1",
                "cocoon-b",
            ),
            id="future-claim-protected",
        ),
        pytest.param(
            SlotCase(
                {}, [live("go-pod", vm="vk-ns-demo-0", node="cocoon-a")], "ns.demo.1", "cocoon-b"
            ),
            id="annotation-held-slot",
        ),
        pytest.param(
            SlotCase(
                {"ns.demo.0": entry(f"{RS}-<unnamed>", 0, node="cocoon-a")},
                [live(f"{RS}-q2x4z", vm="vk-ns-demo-0", node="cocoon-a")],
                "ns.demo.1",
                "cocoon-b",
            ),
            id="go-original-unnamed-entry-protected-by-annotation",
        ),
        pytest.param(
            SlotCase({}, [live("web-0", vm="vk-ns-web-0")], "ns.demo.0", "cocoon-a"),
            id="other-vm-name-does-not-hold",
        ),
        pytest.param(
            SlotCase(
                {"ns.demo.0": entry("done", 0, node="cocoon-b")},
                [live("done", node="cocoon-b", phase="Succeeded", vm="vk-ns-demo-0")],
                "ns.demo.0",
                "cocoon-b",
            ),
            id="finished-pod-holds-nothing",
        ),
        pytest.param(
            SlotCase(
                {
                    "ns.web.0": entry("w", 0, deploy="web", node="cocoon-a"),
                    "other.demo.0": entry("o", 0, ns="other", node="cocoon-a"),
                },
                [live("w")],
                "ns.demo.0",
                "cocoon-a",
            ),
            id="other-deployment-and-namespace-ignored",
        ),
        pytest.param(
            SlotCase(
                {
                    "ns.demo.0": entry("a", 0, node="cocoon-a"),
                    "ns.demo.2": entry("demo-7b7c9d9d5f-new", 2, node="cocoon-b", age_s=5),
                },
                [live("a", node="cocoon-a")],
                "ns.demo.2",
                "cocoon-b",
                write=False,
            ),
            id="re-admission-inside-window-writes-nothing",
        ),
        pytest.param(
            SlotCase(
                {"ns.demo.2": entry("demo-7b7c9d9d5f-new", 2, node="cocoon-b", age_s=60)},
                [live("demo-7b7c9d9d5f-new", node="cocoon-b")],
                "ns.demo.2",
                "cocoon-b",
            ),
            id="re-admission-outside-window-renews-claim",
        ),
        pytest.param(
            SlotCase(
                {"legacy-row": entry("gone", 0, node="cocoon-b")},
                [],
                "ns.demo.0",
                "cocoon-b",
                ("legacy-row",),
            ),
            id="value-under-odd-key-moves",
        ),
        pytest.param(
            SlotCase(
                {
                    "ns.demo.0": entry("gone", 0, node="cocoon-b"),
                    "copy": entry("older", 0, node="cocoon-a"),
                },
                [],
                "ns.demo.0",
                "cocoon-b",
                ("copy",),
            ),
            id="canonical-row-preferred-stale-copy-removed",
        ),
        pytest.param(
            SlotCase(
                {"ns.demo.0": "{not json", "zz": "junk"},
                [],
                "ns.demo.0",
                "cocoon-a",
            ),
            id="malformed-ignored-not-removed",
        ),
    ],
)
def test_deployment_slot(case: SlotCase) -> None:
    cluster = Cluster(pods=case.pods)
    draft = drafted(reserve(demo_pod(case.pod), case.entries, cluster))
    slot = int(case.key.rsplit(".", 1)[1])
    assert draft.key == case.key
    assert draft.reservation.slot == slot
    assert draft.reservation.vm_name == f"vk-ns-demo-{slot}"
    assert draft.reservation.pod == case.pod
    assert draft.reservation.node == case.node
    assert draft.reservation.deployment == "demo"
    assert draft.reservation.missing_since is None
    assert draft.remove == case.remove
    assert draft.write is case.write
    if case.write:
        assert draft.reservation.updated_at == NOW
    data = draft.apply(case.entries)
    for key in case.entries.keys() - set(case.remove) - {case.key}:
        assert data[key] == case.entries[key], "other entries, malformed included, stay"
    assert decode(data[case.key]) == draft.reservation


def test_malformed_values_elsewhere_survive_the_write() -> None:
    entries = {"zz": "junk", "ns.demo.0": entry("a", 0, node="cocoon-a")}
    draft = drafted(reserve(demo_pod("p"), entries, Cluster(pods=[live("a")])))
    assert draft.apply(entries)["zz"] == "junk"


def test_own_row_at_another_slot_is_dropped() -> None:
    entries = {
        "ns.demo.1": entry("me", 1, node="cocoon-a", age_s=5),
        "ns.demo.3": entry("me", 3, node="cocoon-b", age_s=5),
    }
    draft = drafted(reserve(demo_pod("me"), entries, Cluster()))
    assert (draft.key, draft.remove, draft.write) == ("ns.demo.1", ("ns.demo.3",), True)


def test_deployment_key_overflowing_at_a_higher_slot_fails() -> None:
    deploy = "d" * (253 - len("ns..0"))
    it = demo_like(deploy)
    assert isinstance(it, Intent)
    entries = {f"ns.{deploy}.{s}": entry(f"p{s}", s, deploy=deploy, age_s=1) for s in range(10)}
    assert reserve(it, entries, Cluster()) == Failed(REASON_KEY_TOO_LONG)


def test_deployment_pods_need_the_namespace_list_first() -> None:
    out = plan_entry(
        demo_pod("p"), {}, live_pods=None, nodes=NODES, node_pods={}, now=NOW, window=WINDOW
    )
    assert out == Need(live_pods=True)


# --- bare pods -----------------------------------------------------------------------------------


def test_new_bare_pod_picks_without_listing_its_namespace() -> None:
    cluster = Cluster(pods=[live("x", node="cocoon-a")])
    draft = drafted(reserve(intent("alone"), {}, cluster))
    assert (draft.key, draft.reservation.vm_name, draft.reservation.node) == (
        "ns._pod.alone",
        "vk-ns-alone",
        "cocoon-b",
    )
    assert (draft.reservation.deployment, draft.reservation.slot) == ("", 0)
    assert cluster.listed == ["node/cocoon-a", "node/cocoon-b"]


def test_recreated_bare_pod_keeps_its_node_with_no_pod_lists() -> None:
    cluster = Cluster()
    entries = {"ns._pod.web-0": entry("web-0", deploy="", node="cocoon-a")}
    draft = drafted(reserve(intent("web-0", owner=("StatefulSet", "web")), entries, cluster))
    assert (draft.key, draft.reservation.node, draft.write) == ("ns._pod.web-0", "cocoon-a", True)
    assert cluster.listed == []


def test_legacy_bare_row_moves_to_its_canonical_key() -> None:
    entries = {"ns._pod.0": entry("web-0", deploy="", node="cocoon-b"), "ns._pod.other": "junk"}
    draft = drafted(reserve(intent("web-0"), entries, Cluster()))
    assert (draft.key, draft.remove, draft.reservation.node) == (
        "ns._pod.web-0",
        ("ns._pod.0",),
        "cocoon-b",
    )
    assert draft.apply(entries).keys() == {"ns._pod.web-0", "ns._pod.other"}


@pytest.mark.parametrize(
    ("age_s", "pods", "outcome", "listed"),
    [
        pytest.param(5, [], Failed(REASON_KEY_HELD), [], id="in-flight-claim"),
        pytest.param(60, [live("web-0")], Failed(REASON_KEY_HELD), ["pods/ns"], id="pod-live"),
        pytest.param(60, [], "cocoon-a", ["pods/ns"], id="pod-gone-takeover"),
        pytest.param(
            60, [live("web-0", phase="Failed")], "cocoon-a", ["pods/ns"], id="pod-finished"
        ),
    ],
)
def test_bare_key_held_by_another_pod(
    age_s: float, pods: list[PodSummary], outcome: Failed | str, listed: list[str]
) -> None:
    # A Go-original `ns._pod.0` row (for StatefulSet pod web-0) sits on the key of a pod named 0.
    cluster = Cluster(pods=pods)
    entries = {"ns._pod.0": entry("web-0", deploy="", node="cocoon-a", age_s=age_s)}
    out = reserve(intent("0"), entries, cluster)
    if isinstance(outcome, Failed):
        assert out == outcome
    else:
        draft = drafted(out)
        assert (draft.key, draft.reservation.pod, draft.reservation.node) == (
            "ns._pod.0",
            "0",
            outcome,
        )
    assert cluster.listed == listed


def test_hashed_bare_key() -> None:
    long_name = "x" * 300
    draft = drafted(reserve(intent(long_name), {}, Cluster()))
    assert len(draft.key) == 253
    assert draft.reservation.vm_name == f"vk-ns-{long_name}"
    assert draft.reservation.pod == long_name


# --- placement (SPEC 5.7) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "node_name", "warnings", "listed"),
    [
        pytest.param(NODES, "cocoon-b", (), [], id="sticky-kept"),
        pytest.param(
            (node("cocoon-a"), node("cocoon-b", unschedulable=True)),
            "cocoon-b",
            (sticky_kept_warning("cocoon-b", "cordoned"),),
            [],
            id="sticky-cordoned-example-6",
        ),
        pytest.param(
            (node("cocoon-a"), node("cocoon-b", ready="Unknown")),
            "cocoon-b",
            (sticky_kept_warning("cocoon-b", "NotReady"),),
            [],
            id="sticky-not-ready",
        ),
        pytest.param(
            (node("cocoon-a"), node("cocoon-c")),
            "cocoon-a",
            ('cocoon-webhook: sticky node "cocoon-b" left pool "default"; pinned to "cocoon-a"',),
            ["node/cocoon-a", "node/cocoon-c"],
            id="sticky-gone-example-6",
        ),
        pytest.param(
            (node("cocoon-a", ready="False"),),
            "",
            (sticky_gone_warning("cocoon-b", "default", ""),),
            [],
            id="sticky-gone-no-candidate",
        ),
    ],
)
def test_sticky_node(
    nodes: tuple[NodeView, ...], node_name: str, warnings: tuple[str, ...], listed: list[str]
) -> None:
    cluster = Cluster(nodes=nodes)
    entries = {"ns._pod.web-0": entry("web-0", deploy="", node="cocoon-b")}
    draft = drafted(reserve(intent("web-0"), entries, cluster))
    assert draft.reservation.node == node_name
    assert draft.warnings == warnings
    assert cluster.listed == listed


def test_no_candidate_leaves_the_pod_to_the_scheduler_example_11() -> None:
    it = intent("p", labels={"cocoonstack.io/pool": "lonely"})
    draft = drafted(reserve(it, {}, Cluster(nodes=())))
    assert (draft.reservation.pool, draft.reservation.node) == ("lonely", "")
    assert draft.warnings == (no_node_warning("lonely"),)
    ops = [op.path for op in reserved_verdict(it, draft).patch]
    assert "/spec/nodeName" not in ops


def test_entry_with_empty_node_picks_again() -> None:
    entries = {"ns._pod.p": entry("p", deploy="", node="")}
    draft = drafted(reserve(intent("p"), entries, Cluster()))
    assert draft.reservation.node == "cocoon-a"
    assert draft.warnings == ()


def test_only_candidates_are_listed() -> None:
    cluster = Cluster(nodes=(node("cocoon-a", unschedulable=True), node("cocoon-b")))
    draft = drafted(reserve(intent("p"), {}, cluster))
    assert draft.reservation.node == "cocoon-b"
    assert cluster.listed == ["node/cocoon-b"]


# --- size (SPEC 5.8) -----------------------------------------------------------------------------


def test_configmap_full() -> None:
    it = intent("p")
    size = data_bytes(drafted(reserve(it, {}, Cluster())).apply({}))
    filler_key = "zz"
    fits = {filler_key: "x" * (CONFIGMAP_DATA_LIMIT - size - len(filler_key))}
    assert drafted(reserve(it, fits, Cluster())).write
    too_big = {filler_key: fits[filler_key] + "x"}
    assert reserve(it, too_big, Cluster()) == Failed(REASON_FULL)


# --- patch (SPEC 5.9) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "generated", "node_name", "ops"),
    [
        pytest.param(
            None,
            "demo-7b7c9d9d5f-xxxxx",
            "cocoon-b",
            [
                {"op": "add", "path": "/metadata/name", "value": "demo-7b7c9d9d5f-xxxxx"},
                {"op": "add", "path": "/metadata/annotations", "value": {}},
                {
                    "op": "add",
                    "path": "/metadata/annotations/vm.cocoonstack.io~1name",
                    "value": "vk",
                },
                {"op": "add", "path": "/spec/nodeName", "value": "cocoon-b"},
            ],
            id="all-four-in-order",
        ),
        pytest.param(
            {},
            None,
            "",
            [{"op": "add", "path": "/metadata/annotations/vm.cocoonstack.io~1name", "value": "vk"}],
            id="empty-annotations-present-no-node",
        ),
        pytest.param(
            {"vm.cocoonstack.io/name": "old"},
            None,
            "n",
            [
                {
                    "op": "add",
                    "path": "/metadata/annotations/vm.cocoonstack.io~1name",
                    "value": "vk",
                },
                {"op": "add", "path": "/spec/nodeName", "value": "n"},
            ],
            id="existing-annotation-replaced-by-add",
        ),
    ],
)
def test_patch_ops(
    annotations: dict[str, str] | None,
    generated: str | None,
    node_name: str,
    ops: list[dict[str, Any]],
) -> None:
    view = PodView.decode(pod_json("p", annotations=annotations))
    assert [op.to_json() for op in patch_ops(view, "vk", node_name, generated)] == ops


def test_null_annotations_get_the_map_first() -> None:
    obj = pod_json("p")
    obj["metadata"]["annotations"] = None
    ops = patch_ops(PodView.decode(obj), "vk", "", None)
    assert [op.path for op in ops] == [
        "/metadata/annotations",
        "/metadata/annotations/vm.cocoonstack.io~1name",
    ]


# --- worked examples (SPEC 5.12) -----------------------------------------------------------------


def test_worked_examples_1_to_3_and_4() -> None:
    cluster = Cluster(pods=[live("busy-1", node="cocoon-a"), live("busy-2", node="cocoon-a")])
    entries: dict[str, str] = {}
    rng = random.Random(12)
    admitted = []
    for step, (key, node_name) in enumerate(
        [("ns.demo.0", "cocoon-b"), ("ns.demo.1", "cocoon-b"), ("ns.demo.2", "cocoon-a")]
    ):
        it = intent(generate_name=f"{RS}-", owner=("ReplicaSet", RS), rng=rng)
        draft = drafted(reserve(it, entries, cluster, NOW + timedelta(seconds=step)))
        verdict = reserved_verdict(it, draft)
        assert draft.key == key
        assert draft.reservation.node == node_name
        assert [op.to_json() for op in verdict.patch] == [
            {"op": "add", "path": "/metadata/name", "value": it.pod_name},
            {"op": "add", "path": "/metadata/annotations", "value": {}},
            {
                "op": "add",
                "path": "/metadata/annotations/vm.cocoonstack.io~1name",
                "value": f"vk-ns-demo-{step}",
            },
            {"op": "add", "path": "/spec/nodeName", "value": node_name},
        ]
        assert verdict.warnings == ()
        assert it.pod_name.startswith(f"{RS}-")
        entries = draft.apply(entries)
        admitted.append(it.pod_name)  # not yet visible to the LISTs: in flight

    # Example 4: all three ran; slot 1's pod was deleted a minute ago. Its replacement takes
    # slot 1 and its sticky node without any node pod LIST.
    later = NOW + timedelta(minutes=2)
    cluster = Cluster(
        pods=[
            live(admitted[0], node="cocoon-b", vm="vk-ns-demo-0"),
            live(admitted[2], node="cocoon-a", vm="vk-ns-demo-2"),
        ]
    )
    it = intent(generate_name=f"{RS}-", owner=("ReplicaSet", RS), rng=rng)
    draft = drafted(reserve(it, entries, cluster, later))
    assert (draft.key, draft.reservation.node, draft.reservation.pod) == (
        "ns.demo.1",
        "cocoon-b",
        it.pod_name,
    )
    assert cluster.listed == ["pods/ns"]


def test_example_5_rollout_takes_the_next_slot() -> None:
    pods = [live(f"old-{s}", vm=f"vk-ns-demo-{s}", node="cocoon-a") for s in range(3)]
    entries = {f"ns.demo.{s}": entry(f"old-{s}", s, node="cocoon-a") for s in range(3)}
    it = intent(generate_name="demo-5d8f7c6b9-", owner=("ReplicaSet", "demo-5d8f7c6b9"))
    draft = drafted(reserve(it, entries, Cluster(pods=pods)))
    assert (draft.key, draft.reservation.vm_name, draft.reservation.node) == (
        "ns.demo.3",
        "vk-ns-demo-3",
        "cocoon-b",
    )


# --- invariants 1, 2 and 5 of SPEC 5.5 under random histories -----------------------------------


@dataclass
class ModelPod:
    name: str
    slot: int
    claimed: datetime
    visible_at: datetime
    alive: bool = True


OPS = st.one_of(
    st.tuples(st.just("admit"), st.integers(0, 29)),  # visible after this many seconds
    st.tuples(st.just("delete"), st.integers(0, 50)),
    st.tuples(st.just("readmit"), st.integers(0, 50)),
    st.tuples(st.just("tick"), st.integers(0, 40)),
    st.tuples(st.just("reap"), st.just(0)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(OPS, max_size=40))
def test_slot_invariants_hold_for_random_histories(ops: list[tuple[str, int]]) -> None:
    now = NOW
    entries: dict[str, str] = {}
    pods: list[ModelPod] = []

    def cluster() -> Cluster:
        return Cluster(
            pods=[
                live(p.name, vm=f"vk-ns-demo-{p.slot}", node="cocoon-a")
                for p in pods
                if p.alive and p.visible_at <= now
            ]
        )

    def occupied() -> set[int]:
        # Slots a new pod must not get: live pods (visible or not) and claims in the window.
        return {p.slot for p in pods if p.alive or now - p.claimed < WINDOW}

    for number, (op, arg) in enumerate(ops):
        alive = [p for p in pods if p.alive]
        if op == "admit":
            before = occupied()
            it = demo_pod(f"{RS}-{number}")
            draft = drafted(reserve(it, entries, cluster(), now))
            slot = draft.reservation.slot
            assert slot not in before, "invariants 1 and 5: slot of a live or in-flight pod"
            assert slot <= len(before), "invariant 2: lowest free slot"
            entries = draft.apply(entries) if draft.write else entries
            pods.append(ModelPod(it.pod_name, slot, now, now + timedelta(seconds=arg)))
        elif op == "delete" and alive:
            alive[arg % len(alive)].alive = False
        elif op == "readmit" and alive:
            target = alive[arg % len(alive)]
            draft = drafted(reserve(demo_pod(target.name), entries, cluster(), now))
            assert draft.reservation.slot == target.slot, "re-admission is idempotent"
            if draft.write:
                entries = draft.apply(entries)
                target.claimed = now
        elif op == "tick":
            now += timedelta(seconds=arg)
        elif op == "reap":
            names = {p.name for p in pods if p.alive}
            entries = {
                k: v
                for k, v in entries.items()
                if decode(v).pod in names or decode(v).in_flight(now, WINDOW)
            }
        live_slots = [p.slot for p in pods if p.alive]
        assert len(live_slots) == len(set(live_slots)), "invariant 1: no shared slot"
        for value in entries.values():
            json.loads(value)
