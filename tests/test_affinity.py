"""AffinityStore over FakeKube: the read-plan-write loop, conflicts, deadline, dry run, budget."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from common.affinity import MAX_ATTEMPTS, NODE_PODS_TTL_S, AffinityStore
from common.decisions.mutate import Draft, Failed, Intent, plan
from common.kube import ConfigMap, KubeError, Unreachable
from common.pod import decode_pod
from common.reservation import Reservation, data_bytes, decode, encode
from tests.fakes import FakeKube
from tests.helpers import COCOON_TOLERATION, metric

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=30)
CM = ("cocoon-system", "cocoon-affinity-default")


def node(name: str, pool: str = "default", ready: str = "True", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"cocoonstack.io/pool": pool}},
        "spec": {"taints": [{"key": "virtual-kubelet.io/provider", "value": "cocoon",
                             "effect": "NoSchedule"}], **spec},
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }  # fmt: skip


def running(name: str, node_name: str, namespace: str = "other") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"nodeName": node_name},
        "status": {"phase": "Running"},
    }


def pod_intent(name: str = "", *, rs: str | None = "demo-7b7c9d9d5f") -> Intent:
    metadata: dict[str, Any] = {"namespace": "ns"}
    if name:
        metadata["name"] = name
    else:
        metadata["generateName"] = f"{rs}-" if rs else "job-x-"
    if rs:
        metadata["ownerReferences"] = [{"kind": "ReplicaSet", "name": rs, "uid": "u"}]
    obj = {"metadata": metadata, "spec": {"containers": [], "tolerations": [COCOON_TOLERATION]}}
    result = plan("CREATE", "Pod", "ns", "", decode_pod(obj))
    assert isinstance(result, Intent)
    return result


@pytest.fixture
def kube() -> FakeKube:
    fake = FakeKube()
    fake.nodes = [node("cocoon-a"), node("cocoon-b"), node("gpu-1", pool="gpu")]
    fake.pods = [running("x1", "cocoon-a"), running("x2", "cocoon-a")]
    return fake


class Clock:
    def __init__(self) -> None:
        self.now = NOW
        self.mono = 1000.0

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.mono += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(kube: FakeKube, clock: Clock) -> AffinityStore:
    return AffinityStore(
        kube, WINDOW, clock=clock.wall, monotonic=clock.monotonic, sleep=clock.sleep
    )


def stored(kube: FakeKube) -> dict[str, Reservation]:
    return {k: decode(v) for k, v in kube.configmaps[CM].data.items()}


def reserved(result: Draft | Failed) -> Reservation:
    assert isinstance(result, Draft), result
    return result.reservation


def test_worked_examples_1_to_3(store: AffinityStore, kube: FakeKube, clock: Clock) -> None:
    placed = []
    for _ in range(3):
        reservation = reserved(store.reserve(pod_intent(), clock.mono + 3, dry_run=False))
        placed.append((reservation.slot, reservation.vm_name, reservation.node))
        clock.now += timedelta(seconds=1)
    assert placed == [
        (0, "vk-ns-demo-0", "cocoon-b"),
        (1, "vk-ns-demo-1", "cocoon-b"),  # 0 live + 1 in flight < 2 live
        (2, "vk-ns-demo-2", "cocoon-a"),  # 2 = 2: alphabetical
    ]
    assert sorted(stored(kube)) == ["ns.demo.0", "ns.demo.1", "ns.demo.2"]
    assert kube.configmaps[CM].labels == {
        "app.kubernetes.io/managed-by": "cocoon-webhook",
        "cocoonstack.io/pool": "default",
    }


def test_conflict_replans_against_the_winner(
    store: AffinityStore, kube: FakeKube, clock: Clock
) -> None:
    store.reserve(pod_intent(), clock.mono + 3, dry_run=False)  # slot 0 exists: we will PUT

    def rival_claims_slot_1() -> None:
        current = kube.configmaps[CM]
        rival = Reservation("default", "ns", "demo", 1, "vk-ns-demo-1", "rival", "cocoon-a", NOW)
        current.data["ns.demo.1"] = encode(rival)
        current.resource_version += "0"  # the rival's write moved the resourceVersion on

    kube.script["replace_configmap"] = [rival_claims_slot_1]
    mine = reserved(store.reserve(pod_intent("demo-7b7c9d9d5f-mine1"), clock.mono + 3, False))
    assert mine.slot == 2
    entries = stored(kube)
    assert entries["ns.demo.1"].pod == "rival"  # not overwritten
    assert entries["ns.demo.2"].pod == "demo-7b7c9d9d5f-mine1"
    assert kube.calls.count("replace_configmap") == 2
    # Snapshots are reused across the retry: only the ConfigMap is read again.
    assert kube.calls.count("list_nodes") == 2  # once per admission, two admissions


def test_gives_up_after_bounded_conflicts(
    store: AffinityStore, kube: FakeKube, clock: Clock
) -> None:
    store.reserve(pod_intent(), clock.mono + 3, dry_run=False)

    def bump() -> None:
        kube.configmaps[CM].resource_version += "0"

    kube.script["replace_configmap"] = [bump] * (MAX_ATTEMPTS + 5)
    result = store.reserve(pod_intent(), clock.mono + 3, dry_run=False)
    assert result == Failed("conflicts")
    assert kube.calls.count("replace_configmap") == MAX_ATTEMPTS
    assert len(stored(kube)) == 1  # nothing partial


def test_create_race_is_a_conflict(store: AffinityStore, kube: FakeKube, clock: Clock) -> None:
    def rival_creates() -> None:
        rival = Reservation("default", "ns", "demo", 0, "vk-ns-demo-0", "rival", "cocoon-b", NOW)
        kube.configmaps[CM] = ConfigMap(CM[1], CM[0], {"ns.demo.0": encode(rival)},
                                        resource_version="77")  # fmt: skip

    kube.script["create_configmap"] = [rival_creates]
    mine = reserved(store.reserve(pod_intent("demo-7b7c9d9d5f-mine1"), clock.mono + 3, False))
    assert mine.slot == 1
    assert stored(kube)["ns.demo.0"].pod == "rival"
    # The rival forgot the labels; our write repaired them, or the reaper would never see it.
    assert kube.configmaps[CM].labels["app.kubernetes.io/managed-by"] == "cocoon-webhook"


def test_dry_run_plans_the_same_and_writes_nothing(
    store: AffinityStore, kube: FakeKube, clock: Clock
) -> None:
    dry = reserved(store.reserve(pod_intent("demo-7b7c9d9d5f-aaaaa"), clock.mono + 3, True))
    assert "create_configmap" not in kube.calls and CM not in kube.configmaps
    real = reserved(store.reserve(pod_intent("demo-7b7c9d9d5f-aaaaa"), clock.mono + 3, False))
    assert (dry.slot, dry.vm_name, dry.node) == (real.slot, real.vm_name, real.node)


def test_deadline_already_passed(store: AffinityStore, kube: FakeKube, clock: Clock) -> None:
    assert store.reserve(pod_intent(), clock.mono - 0.001, dry_run=False) == Failed(
        "deadline exceeded"
    )
    assert kube.calls == []


# Calls of each verb for the first replica of a Deployment: list_pods once for the namespace
# and once per candidate node.
CALLS = {"get_configmap": 1, "list_nodes": 1, "list_pods": 3, "create_configmap": 1}
VERBS = list(CALLS)
TRANSIENT = [
    pytest.param(KubeError("boom", 500, "InternalError"), "kubernetes API error 500", id="500"),
    pytest.param(KubeError("busy", 429, "TooManyRequests"), "kubernetes API error 429", id="429"),
    pytest.param(Unreachable("refused"), "kubernetes API unreachable", id="unreachable"),
]


@pytest.mark.parametrize(("error", "reason"), TRANSIENT)
@pytest.mark.parametrize("verb", VERBS)
def test_one_transient_error_is_retried(
    store: AffinityStore, kube: FakeKube, clock: Clock, error: KubeError, reason: str, verb: str
) -> None:
    kube.script[verb] = [error]
    reserved(store.reserve(pod_intent(), clock.mono + 3, dry_run=False))
    assert kube.calls.count(verb) == CALLS[verb] + 1
    assert sorted(stored(kube)) == ["ns.demo.0"]


@pytest.mark.parametrize(("error", "reason"), TRANSIENT)
@pytest.mark.parametrize("verb", VERBS)
def test_lasting_transient_errors_fail_open_by_the_deadline(
    store: AffinityStore, kube: FakeKube, clock: Clock, error: KubeError, reason: str, verb: str
) -> None:
    kube.script[verb] = [error] * 100
    deadline = clock.mono + 3
    result = store.reserve(pod_intent(), deadline, dry_run=False)
    assert result == Failed(reason)
    assert 2 < kube.calls.count(verb) <= MAX_ATTEMPTS
    assert clock.mono <= deadline
    assert CM not in kube.configmaps


@pytest.mark.parametrize("status", [400, 403, 404, 422])
@pytest.mark.parametrize("verb", ["list_nodes", "list_pods", "create_configmap"])
def test_answers_that_are_final_are_not_retried(
    store: AffinityStore, kube: FakeKube, clock: Clock, status: int, verb: str
) -> None:
    kube.script[verb] = [KubeError("no", status, "Whatever")]
    result = store.reserve(pod_intent(), clock.mono + 3, dry_run=False)
    assert result == Failed(f"kubernetes API error {status}")
    assert kube.calls.count(verb) == 1
    assert CM not in kube.configmaps


def test_conflicts_and_transient_retries_share_one_budget(
    store: AffinityStore, kube: FakeKube, clock: Clock
) -> None:
    store.reserve(pod_intent(), clock.mono + 3, dry_run=False)

    def bump() -> None:
        kube.configmaps[CM].resource_version += "0"

    lost = MAX_ATTEMPTS // 2
    kube.script["replace_configmap"] = [bump] * lost + [KubeError("boom", 503, "")] * 100
    result = store.reserve(pod_intent(), clock.mono + 60, dry_run=False)
    assert result == Failed("kubernetes API error 503")
    # One write and MAX_ATTEMPTS - 1 retries in all, whether lost to a conflict or failed.
    assert kube.calls.count("replace_configmap") == MAX_ATTEMPTS
    assert len(stored(kube)) == 1


def test_steady_state_budget(store: AffinityStore, kube: FakeKube, clock: Clock) -> None:
    first = reserved(store.reserve(pod_intent("demo-7b7c9d9d5f-aaaaa"), clock.mono + 3, False))
    clock.now += timedelta(minutes=5)  # the pod is gone and its claim is old: a takeover
    kube.calls.clear()
    again = reserved(store.reserve(pod_intent("demo-7b7c9d9d5f-bbbbb"), clock.mono + 3, False))
    assert (again.slot, again.node) == (first.slot, first.node)  # sticky
    assert sorted(kube.calls) == sorted(
        ["get_configmap", "list_pods", "list_nodes", "replace_configmap"]
    )


def test_bare_pod_with_sticky_node_budget(
    store: AffinityStore, kube: FakeKube, clock: Clock
) -> None:
    first = reserved(store.reserve(pod_intent("web-0", rs=None), clock.mono + 3, False))
    clock.now += timedelta(minutes=5)
    kube.calls.clear()
    again = reserved(store.reserve(pod_intent("web-0", rs=None), clock.mono + 3, False))
    assert again.node == first.node
    assert sorted(kube.calls) == ["get_configmap", "list_nodes", "replace_configmap"]


def test_readmission_inside_window_writes_nothing(
    store: AffinityStore, kube: FakeKube, clock: Clock
) -> None:
    reserved(store.reserve(pod_intent("demo-7b7c9d9d5f-aaaaa"), clock.mono + 3, False))
    version = kube.configmaps[CM].resource_version
    before = len(kube.calls)
    clock.now += timedelta(seconds=2)
    again = reserved(store.reserve(pod_intent("demo-7b7c9d9d5f-aaaaa"), clock.mono + 3, False))
    assert again.slot == 0
    # no PUT at all (one that changed nothing would keep the resourceVersion too)
    assert "replace_configmap" not in kube.calls[before:]
    assert kube.configmaps[CM].resource_version == version


def test_values_are_go_compatible_json(store: AffinityStore, kube: FakeKube, clock: Clock) -> None:
    store.reserve(pod_intent("demo-7b7c9d9d5f-aaaaa"), clock.mono + 3, False)
    raw = kube.configmaps[CM].data["ns.demo.0"]
    assert raw == (
        '{"pool":"default","namespace":"ns","deployment":"demo","slot":0,'
        '"vmName":"vk-ns-demo-0","pod":"demo-7b7c9d9d5f-aaaaa","node":"cocoon-b",'
        '"updatedAt":"2026-11-25T12:00:00Z"}'
    )
    assert json.loads(raw)["slot"] == 0


def test_concurrent_admissions_share_one_write(kube: FakeKube) -> None:
    store = AffinityStore(kube, WINDOW, clock=lambda: NOW)
    started = threading.Event()

    def slow_first_read() -> None:
        started.set()
        time.sleep(0.2)  # the others queue up behind this batch meanwhile

    kube.script["get_configmap"] = [slow_first_read]
    results: list[Draft | Failed] = []

    def admit() -> None:
        results.append(store.reserve(pod_intent(), time.monotonic() + 3, dry_run=False))

    first = threading.Thread(target=admit)
    first.start()
    started.wait(2)
    others = [threading.Thread(target=admit) for _ in range(9)]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(5)
    assert sorted(reserved(r).slot for r in results) == list(range(10))
    assert sorted(stored(kube)) == sorted(f"ns.demo.{slot}" for slot in range(10))
    # The first admission wrote alone; the nine that queued behind it shared one write.
    assert kube.calls.count("create_configmap") + kube.calls.count("replace_configmap") == 2


# --- what the process keeps and shows ------------------------------------------------------------


def test_node_pod_lists_are_reused_for_their_ttl_then_read_again(
    store: AffinityStore, kube: FakeKube, clock: Clock
) -> None:
    lists: list[tuple[str, str]] = []
    plain_list_pods = kube.list_pods

    def recording(namespace: str | None, field_selector: str, timeout: float) -> Any:
        node = field_selector.partition("spec.nodeName=")[2].partition(",")[0]
        lists.append((namespace or "", node))
        return plain_list_pods(namespace, field_selector, timeout)

    kube.list_pods = recording  # type: ignore[method-assign]

    def nodes_listed_by(name: str) -> list[str]:
        before = len(lists)
        reserved(store.reserve(pod_intent(name, rs=None), clock.mono + 3, dry_run=False))
        return sorted(node for _, node in lists[before:] if node)

    assert nodes_listed_by("first") == ["cocoon-a", "cocoon-b"]
    clock.mono += NODE_PODS_TTL_S * 0.9
    assert nodes_listed_by("second") == []  # the lists read for "first" still serve
    clock.mono += NODE_PODS_TTL_S * 0.2
    assert nodes_listed_by("third") == ["cocoon-a", "cocoon-b"]


def test_reservations_conflicts_and_pool_size_are_exported(
    store: AffinityStore, kube: FakeKube, clock: Clock
) -> None:
    """Dashboards and alerts read these names (knative/monitoring/)."""
    pool = {"pool": "default"}
    reservations = metric("cocoon_webhook_affinity_reservations_total", **pool)
    conflicts = metric("cocoon_webhook_affinity_conflicts_total", **pool)
    store.reserve(pod_intent("one", rs=None), clock.mono + 3, dry_run=False)

    def rival_writes() -> None:
        kube.configmaps[CM].resource_version += "0"

    kube.script["replace_configmap"] = [rival_writes]
    store.reserve(pod_intent("two", rs=None), clock.mono + 3, dry_run=False)
    assert metric("cocoon_webhook_affinity_reservations_total", **pool) == reservations + 2
    assert metric("cocoon_webhook_affinity_conflicts_total", **pool) == conflicts + 1
    data = kube.configmaps[CM].data
    stored = {**pool, "configmap": CM[1]}
    assert metric("cocoon_webhook_affinity_entries", **stored) == len(data) == 2
    assert metric("cocoon_webhook_affinity_configmap_bytes", **stored) == data_bytes(data)
    # A dry run plans but stores nothing: no reservation counted.
    store.reserve(pod_intent("three", rs=None), clock.mono + 3, dry_run=True)
    assert metric("cocoon_webhook_affinity_reservations_total", **pool) == reservations + 2
