"""Node picker (SPEC 5.7): candidate filtering, taint matching, usage with in-flight claims."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.decisions import picker
from common.pod import NodeCondition, NodeView, PodSummary, Taint, Toleration
from common.reservation import Reservation

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=30)
COCOON = Toleration(key="virtual-kubelet.io/provider", operator="Exists")
VK_TAINT = Taint(key="virtual-kubelet.io/provider", value="cocoon", effect="NoSchedule")


def node(
    name: str,
    *,
    ready: str = "True",
    unschedulable: bool = False,
    deleting: bool = False,
    taints: tuple[Taint, ...] = (VK_TAINT,),
) -> NodeView:
    return NodeView(
        name=name,
        unschedulable=unschedulable,
        deletion_timestamp="2024-05-01T11:00:00Z" if deleting else None,
        conditions=(NodeCondition(type="Ready", status=ready),) if ready else (),
        taints=taints,
    )


@pytest.mark.parametrize(
    ("toleration", "taint", "tolerated"),
    [
        pytest.param(COCOON, VK_TAINT, True, id="exists-ignores-value"),
        pytest.param(
            Toleration(key="virtual-kubelet.io/provider", value="cocoon"),
            VK_TAINT,
            True,
            id="empty-operator-is-equal",
        ),
        pytest.param(
            Toleration(key="virtual-kubelet.io/provider", operator="Equal", value="other"),
            VK_TAINT,
            False,
            id="equal-compares-value",
        ),
        pytest.param(Toleration(operator="Exists"), VK_TAINT, True, id="empty-key-exists-all"),
        pytest.param(
            Toleration(operator="Exists", effect="NoExecute"),
            VK_TAINT,
            False,
            id="effect-must-match",
        ),
        pytest.param(
            Toleration(key="virtual-kubelet.io/provider", operator="Exists", effect="NoSchedule"),
            VK_TAINT,
            True,
            id="effect-matches",
        ),
        pytest.param(Toleration(key="other", operator="Exists"), VK_TAINT, False, id="other-key"),
        pytest.param(
            Toleration(key="virtual-kubelet.io/provider", operator="Bogus"),
            VK_TAINT,
            False,
            id="unknown-operator",
        ),
    ],
)
def test_tolerates(toleration: Toleration, taint: Taint, tolerated: bool) -> None:
    assert picker.tolerates(toleration, taint) is tolerated


@pytest.mark.parametrize(
    ("candidate", "ok"),
    [
        pytest.param(node("n"), True, id="ready"),
        pytest.param(node("n", ready="False"), False, id="not-ready"),
        pytest.param(node("n", ready="Unknown"), False, id="ready-unknown"),
        pytest.param(node("n", ready=""), False, id="no-ready-condition"),
        pytest.param(node("n", unschedulable=True), False, id="cordoned"),
        pytest.param(node("n", deleting=True), False, id="being-deleted"),
        pytest.param(
            node("n", taints=(VK_TAINT, Taint(key="gpu", effect="NoExecute"))),
            False,
            id="untolerated-noexecute",
        ),
        pytest.param(
            node("n", taints=(VK_TAINT, Taint(key="gpu", effect="PreferNoSchedule"))),
            True,
            id="prefer-no-schedule-ignored",
        ),
        pytest.param(node("n", taints=()), True, id="no-taints"),
    ],
)
def test_candidates_filter(candidate: NodeView, ok: bool) -> None:
    assert picker.candidates([candidate], [COCOON]) == ([candidate] if ok else [])


def test_candidates_without_the_cocoon_toleration() -> None:
    assert picker.candidates([node("n")], []) == []


@pytest.mark.parametrize(
    ("counts", "winner"),
    [
        pytest.param({"cocoon-a": 2, "cocoon-b": 0}, "cocoon-b", id="lowest"),
        pytest.param({"cocoon-b": 2, "cocoon-a": 2}, "cocoon-a", id="tie-smallest-name"),
        pytest.param({"b": 1, "B": 1}, "B", id="byte-wise-uppercase-first"),
        pytest.param({}, None, id="none"),
    ],
)
def test_least_used(counts: dict[str, int], winner: str | None) -> None:
    assert picker.least_used(counts) == winner


def pod(name: str, node_name: str, ns: str = "ns", phase: str = "Running") -> PodSummary:
    return PodSummary(name=name, namespace=ns, node_name=node_name, phase=phase)


def claim(pod_name: str, node_name: str, age_s: float, ns: str = "ns") -> Reservation:
    return Reservation(
        pool="default",
        namespace=ns,
        deployment="demo",
        slot=0,
        vm_name="vk",
        pod=pod_name,
        node=node_name,
        updated_at=NOW - timedelta(seconds=age_s),
    )


def test_usage_counts_live_pods_and_unseen_in_flight_claims() -> None:
    node_pods = {
        "cocoon-a": [
            pod("x", "cocoon-a"),
            pod("y", "cocoon-a", ns="other"),
            pod("done", "cocoon-a", phase="Succeeded"),
        ],
        "cocoon-b": [pod("seen", "cocoon-b")],
    }
    reservations = [
        claim("seen", "cocoon-b", 1),  # already among the node's pods: not twice
        claim("unseen", "cocoon-b", 1),  # in flight, not yet visible
        claim("old", "cocoon-b", 31),  # outside the window
        claim("seen", "cocoon-a", 1, ns="elsewhere"),  # another namespace's pod
        claim("nowhere", "", 1),  # no node recorded
    ]
    counts = picker.usage(
        ["cocoon-a", "cocoon-b", "cocoon-c"], node_pods, reservations, NOW, WINDOW
    )
    assert counts == {"cocoon-a": 3, "cocoon-b": 2, "cocoon-c": 0}
