"""Forged or runaway reviews cannot starve real pods (claims whose pods never appear).

The pure rules first (per-namespace bound, reclaiming under pressure, the reaper's early
release), then the flood itself at small scale through the mutate function and a real API.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import kubernetes
from prometheus_client import REGISTRY

from common.decisions.mutate import REASON_FULL, REASON_UNCONFIRMED, Draft, Failed
from common.decisions.reap import (
    PRESSURE_BYTES,
    Outcome,
    Presence,
    judge,
    unconfirmed_horizon,
)
from common.naming import affinity_labels
from common.reservation import (
    CONFIGMAP_DATA_LIMIT,
    Reservation,
    data_bytes,
    decode,
    encode,
    read_entries,
)
from tests.cluster import add_node, cocoon_pod
from tests.functions_app import function_client, wait_ready
from tests.helpers import patch_of, response_of, review
from tests.test_mutate_plan import NOW, WINDOW, Cluster, demo_pod, entry, intent, live, reserve

GRACE = timedelta(minutes=30)
INTERVAL = timedelta(minutes=5)


def ghost(pod: str, *, ns: str = "ghost", age_s: float = 60, missing_s: float | None = None) -> str:
    """A bare-pod claim from a review whose pod never appeared (or was marked missing)."""
    return encode(
        Reservation(
            pool="default", namespace=ns, deployment="", slot=0, vm_name=f"vk-{ns}-{pod}",
            pod=pod, node="cocoon-a", updated_at=NOW - timedelta(seconds=age_s),
            missing_since=None if missing_s is None else NOW - timedelta(seconds=missing_s),
        )
    )  # fmt: skip


def fill(entries: dict[str, str], make: Any, *, leave: int) -> dict[str, str]:
    """Add entries from `make(i)` until fewer than `leave` bytes of the pool are free."""
    i = 0
    while data_bytes(entries) < CONFIGMAP_DATA_LIMIT - leave:
        key, value = make(i)
        entries[key] = value
        i += 1
    return entries


def reserve_bounded(it: Any, entries: dict[str, str], cluster: Cluster, bound: int) -> Any:
    from common.decisions.mutate import Need, plan_entry

    live_pods = cluster.namespace_pods() if it.needs_live_pods else None
    node_pods: dict[str, Any] = {}
    for _ in range(4):
        out = plan_entry(it, entries, live_pods=live_pods, nodes=cluster.nodes,
                         node_pods=node_pods, now=NOW, window=WINDOW,
                         max_unconfirmed=bound)  # fmt: skip
        if not isinstance(out, Need):
            return out
        if out.live_pods:
            live_pods = cluster.namespace_pods()
        for name in out.node_pods:
            node_pods[name] = cluster.node_pods(name)
    raise AssertionError("plan_entry kept asking")


# --- per-namespace bound -------------------------------------------------------------------------


def test_namespace_over_the_bound_is_refused() -> None:
    entries = {f"ns._pod.f{i}": entry(f"f{i}", deploy="", age_s=1) for i in range(5)}
    cluster = Cluster()
    out = reserve_bounded(intent("real"), entries, cluster, bound=5)
    assert out == Failed(REASON_UNCONFIRMED)
    assert "pods/ns" in cluster.listed  # a bare pod needs the LIST only once over the count
    assert isinstance(reserve_bounded(intent("real"), entries, Cluster(), bound=6), Draft)


def test_listed_pods_do_not_count_against_the_bound() -> None:
    entries = {f"ns._pod.f{i}": entry(f"f{i}", deploy="", age_s=1) for i in range(5)}
    cluster = Cluster(pods=[live("f0")])
    assert isinstance(reserve_bounded(intent("real"), entries, cluster, bound=5), Draft)
    # Carrying the VM name counts as listed too (pods the Go original admitted).
    cluster = Cluster(pods=[live("other", vm="vk-ns-f1")])
    assert isinstance(reserve_bounded(intent("real"), entries, cluster, bound=5), Draft)


def test_below_the_count_nothing_is_listed_for_a_bare_pod() -> None:
    entries = {f"ns._pod.f{i}": entry(f"f{i}", deploy="", age_s=1) for i in range(3)}
    cluster = Cluster()
    assert isinstance(reserve_bounded(intent("real"), entries, cluster, bound=5), Draft)
    assert "pods/ns" not in cluster.listed


def test_readmission_of_a_claimed_pod_is_not_refused() -> None:
    entries = {f"ns._pod.f{i}": entry(f"f{i}", deploy="", age_s=1) for i in range(5)}
    out = reserve_bounded(intent("f0"), entries, Cluster(), bound=5)
    assert isinstance(out, Draft)


def test_other_namespaces_do_not_count() -> None:
    entries = {f"ghost._pod.f{i}": ghost(f"f{i}", age_s=1) for i in range(50)}
    assert isinstance(reserve_bounded(demo_pod("demo-7b7c9d9d5f-aaaaa"), entries, Cluster(),
                                      bound=5), Draft)  # fmt: skip


# --- reclaiming when the pool is short of room ---------------------------------------------------


def test_full_pool_reclaims_claims_the_reaper_found_missing() -> None:
    entries = fill({}, lambda i: (f"ghost._pod.g{i}", ghost(f"g{i}", age_s=600, missing_s=300)),
                   leave=50)  # fmt: skip
    draft = reserve(intent("real"), entries, Cluster())
    assert isinstance(draft, Draft), draft
    assert draft.remove and all(k.startswith("ghost._pod.") for k in draft.remove)
    after = draft.apply(entries)
    assert data_bytes(after) <= CONFIGMAP_DATA_LIMIT
    assert decode(after["ns._pod.real"]).node in ("cocoon-a", "cocoon-b")
    # As few as it takes.
    assert data_bytes(after) > CONFIGMAP_DATA_LIMIT - 2 * len(entries[draft.remove[0]]) - 40


def test_never_confirmed_claims_go_before_pods_that_lived() -> None:
    def make(i: int) -> tuple[str, str]:
        # Even: missing right after the claim (never seen). Odd: ran for a day, then went.
        lived = 86_400 if i % 2 else 60
        return f"ghost._pod.g{i:05d}", ghost(f"g{i:05d}", age_s=lived + 300, missing_s=300)

    entries = fill({}, make, leave=50)
    draft = reserve(intent("real"), entries, Cluster())
    assert isinstance(draft, Draft), draft
    assert all(int(k[-5:]) % 2 == 0 for k in draft.remove), draft.remove


def test_own_namespace_claims_without_pods_are_reclaimed_without_the_reaper() -> None:
    entries = fill({}, lambda i: (f"ns._pod.g{i}", entry(f"g{i}", deploy="", age_s=600)),
                   leave=50)  # fmt: skip
    entries["ns.demo.0"] = entry("demo-7b7c9d9d5f-alive", age_s=600)
    cluster = Cluster(pods=[live("demo-7b7c9d9d5f-alive"), live("g0")])
    draft = reserve_bounded(demo_pod("demo-7b7c9d9d5f-bbbbb"), entries, cluster, bound=10**6)
    assert isinstance(draft, Draft), draft
    assert draft.remove
    assert "ns.demo.0" not in draft.remove and "ns._pod.g0" not in draft.remove  # live pods


def test_bare_pod_lists_its_namespace_before_saying_full() -> None:
    entries = fill({}, lambda i: (f"ns._pod.g{i}", entry(f"g{i}", deploy="", age_s=600)),
                   leave=50)  # fmt: skip
    cluster = Cluster(pods=[live("g1")])
    draft = reserve_bounded(intent("real"), entries, cluster, bound=10**6)
    assert isinstance(draft, Draft), draft
    assert cluster.listed.count("pods/ns") == 1
    assert draft.remove and "ns._pod.g1" not in draft.remove


def test_in_flight_and_unknown_claims_are_never_reclaimed() -> None:
    in_flight = fill({}, lambda i: (f"ghost._pod.g{i}", ghost(f"g{i}", age_s=1)), leave=50)
    assert reserve(intent("real"), in_flight, Cluster()) == Failed(REASON_FULL)
    # Past the window but not judged missing, in a namespace whose pods mutate cannot see.
    unjudged = fill({}, lambda i: (f"ghost._pod.g{i}", ghost(f"g{i}", age_s=600)), leave=50)
    assert reserve(intent("real"), unjudged, Cluster()) == Failed(REASON_FULL)


# --- the reaper ----------------------------------------------------------------------------------


def test_unconfirmed_horizon_only_under_pressure() -> None:
    assert unconfirmed_horizon(PRESSURE_BYTES - 1, WINDOW, INTERVAL) is None
    assert unconfirmed_horizon(PRESSURE_BYTES, WINDOW, INTERVAL) == WINDOW + INTERVAL


def test_reaper_releases_never_confirmed_claims_at_once_under_pressure() -> None:
    data = {
        "ghost._pod.new": ghost("new", age_s=120),  # missing at its first judgement
        "ghost._pod.old": ghost("old", age_s=3600),  # a pod that ran, first seen missing now
        "ghost._pod.young": ghost("young", age_s=5),  # still in flight
        "ns._pod.here": ghost("here", ns="ns", age_s=120),  # its pod is listed
    }
    pods = {"ghost": Presence(), "ns": Presence(names=frozenset({"here"}))}
    horizon = WINDOW + INTERVAL
    changes = judge(read_entries(data), None, pods, NOW, GRACE, WINDOW, horizon)
    assert changes.outcomes == {
        "ghost._pod.new": Outcome.UNCONFIRMED_RELEASED,
        "ghost._pod.old": Outcome.MARKED,
        "ghost._pod.young": Outcome.IN_FLIGHT,
        "ns._pod.here": Outcome.PRESENT,
    }
    assert changes.removals == {"ghost._pod.new"}
    # Without pressure the same claim only gets marked and keeps its grace.
    relaxed = judge(read_entries(data), None, pods, NOW, GRACE, WINDOW, None)
    assert relaxed.outcomes["ghost._pod.new"] is Outcome.MARKED


# --- the flood, at small scale, through the function and a real API ------------------------------

AFFINITY = ("cocoon-system", "cocoon-affinity-default")


def forged(namespace: str) -> bytes:
    name = f"forged-{uuid.uuid4().hex[:12]}"
    pod = cocoon_pod(name=name, namespace=namespace)
    body = review(pod, None, operation="CREATE", kind="Pod", group="", resource="pods",
                  namespace=namespace, name=name, uid=str(uuid.uuid4()))  # fmt: skip
    return json.dumps(body).encode()


def refused_total() -> float:
    value = REGISTRY.get_sample_value(
        "cocoon_webhook_affinity_unconfirmed_refused_total", {"pool": "default"}
    )
    return value or 0.0


def test_flood_of_forged_reviews_leaves_room_for_a_real_pod(emulator: Any) -> None:
    core = kubernetes.client.CoreV1Api(emulator.api_client())
    core.create_namespace({"metadata": {"name": "team"}})
    add_node(core, "cocoon-a")
    # The pool is nearly full of claims the reaper already found missing (an earlier flood).
    stale = fill({}, lambda i: (f"old._pod.g{i}", ghost(f"g{i}", ns="old", age_s=900,
                                                         missing_s=600)), leave=2000)  # fmt: skip
    core.create_namespaced_config_map(
        AFFINITY[0],
        {"metadata": {"name": AFFINITY[1], "labels": affinity_labels("default")}, "data": stale},
    )  # fmt: skip
    bound = 40
    before = refused_total()
    with function_client(
        "mutate", KUBECONFIG=emulator.kubeconfig, AFFINITY_MAX_UNCONFIRMED_PER_NAMESPACE=str(bound)
    ) as client:
        wait_ready(client)  # served from the caches, as in production
        replies = [response_of(client.post("/mutate", content=forged("nowhere")))
                   for _ in range(3 * bound)]  # fmt: skip
        patched = [r for r in replies if "patch" in r]
        refused = [r for r in replies if "patch" not in r]
        assert len(patched) == bound
        assert all(r["allowed"] for r in refused)
        assert {w for r in refused for w in r["warnings"]} == {
            "cocoon-webhook: VM name not reserved (too many unconfirmed claims in namespace); "
            "pod admitted without sticky placement"
        }
        assert refused_total() == before + 2 * bound

        pod = cocoon_pod(name="real-agent", namespace="team")
        body = review(pod, None, operation="CREATE", kind="Pod", group="", resource="pods",
                      namespace="team", name="real-agent", uid="real")  # fmt: skip
        reply = response_of(client.post("/mutate", json=body))
    assert "warnings" not in reply, reply
    ops = {op["path"]: op["value"] for op in patch_of(reply)}
    assert ops["/metadata/annotations/vm.cocoonstack.io~1name"] == "vk-team-real-agent"
    assert ops["/spec/nodeName"] == "cocoon-a"
    # The nearly full ConfigMap split the pool (docs/pools.md); the bound holds over all of it.
    pool = core.list_namespaced_config_map(
        AFFINITY[0], label_selector="cocoonstack.io/pool=default"
    )
    assert all(data_bytes(cm.data or {}) <= CONFIGMAP_DATA_LIMIT for cm in pool.items)
    stored = {k: v for cm in pool.items for k, v in (cm.data or {}).items()}
    assert sum(k.startswith("nowhere.") for k in stored) == bound
