"""Races with the caches behind: three real mutate processes whose watches lag, drop or expire
mid-burst, and a ConfigMap deleted while cached (issue 10's "must stay true").

The API server's part is played as in the race tests: each admitted pod is stored with its
patch as soon as its answer arrives, so the pod caches have real pods to (fail to) see. Watches
are short here (CACHE_MAX_SILENCE=2s: about a second each), but a burst is shorter still: a
fault set just before it would only meet the watches opened after it. So each burst waits,
halfway, until the fault has met every process's watches (`burst_under_fault`).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes
import pytest

from tests.cluster import AFFINITY, affinity_data, apply_patch, cocoon_pod
from tests.test_mutate_races import (
    RS,
    MutateProcess,
    ready_cluster,
    start_all,
    vm_names,
    wait_metric,
)

BURST = 60
WATCHED = ("/api/v1/pods", "/api/v1/namespaces/cocoon-system/configmaps")
CACHES = ("pods", "configmaps")
# Each fault stays set for the whole burst (cleared after it). A watch lasts about a second here,
# longer than a burst takes, so the burst is admitted in two halves: the second half waits until
# the fault has met a watch of every process (see `landed`), so it provably runs on disturbed
# caches, while the first half's chunks run as the faults start to land.
FAULTS = {
    # every event of every pods and ConfigMap watch held back: the caches lag by seconds
    "delayed events": {"watch": "delay", "delay": 0.05, "times": 1000},
    "watch dropped mid-burst": {"watch": "drop", "after": 5, "times": 1000},
    "410 mid-burst": {"watch": "gone", "times": 1000},
}
# What each process counts when one of its watches meets the fault; None: not countable per
# process (a delayed watch only lags).
LANDED_BY = {
    "delayed events": None,
    "watch dropped mid-burst": "cocoon_webhook_cache_watch_failures_total",
    "410 mid-burst": "cocoon_webhook_cache_relists_total",
}
CHUNK = 6


@pytest.fixture(scope="module")
def mutators(kube_emulator: Any) -> Iterator[list[MutateProcess]]:
    processes = start_all(kube_emulator.kubeconfig, {"CACHE_MAX_SILENCE": "2s"})
    yield processes
    for process in processes:
        process.stop()


@pytest.fixture
def core(emulator: Any, mutators: list[MutateProcess]) -> Any:
    return ready_cluster(emulator, mutators)


def admit_and_store(processes: list[MutateProcess], core: Any, pods: list[dict[str, Any]],
                    first_uid: int = 0) -> list[Any]:  # fmt: skip
    """Admit concurrently over the processes; store each pod the moment its answer arrives."""

    def one(i: int, pod: dict[str, Any]) -> Any:
        result = processes[i % len(processes)].admit(pod, f"uid-{first_uid + i}")
        _, response, _ = result
        if response.get("allowed"):
            core.create_namespaced_pod("ns", apply_patch(pod, response))
        return result

    with ThreadPoolExecutor(len(pods)) as pool:
        return list(pool.map(one, range(len(pods)), pods))


def counted(process: MutateProcess, metric: str, cache: str) -> float:
    _, body = process.call("GET", "/metrics", b"")
    found = re.search(rf'^{metric}{{cache="{cache}"}} (\S+)$', body.decode(), re.M)
    return float(found.group(1)) if found else 0.0


def landed(emulator: Any, processes: list[MutateProcess], fault: str,
           before: dict[tuple[int, str], float]) -> bool:  # fmt: skip
    """Whether the fault has met a pods watch and a ConfigMap watch of every process."""
    metric = LANDED_BY[fault]
    if metric is None:
        # Every process re-opens each watch about once a second, and a delayed one lasts
        # longer: three taken per process means every process has lagging watches by now.
        left = {f["path"]: f["times"] for f in emulator.pending_faults()}
        taken = [FAULTS[fault]["times"] - left.get(path, 0) for path in WATCHED]
        return all(n >= 3 * len(processes) for n in taken)
    return all(
        counted(process, metric, cache) > before[i, cache]
        for i, process in enumerate(processes)
        for cache in CACHES
    )


def burst_under_fault(emulator: Any, processes: list[MutateProcess], core: Any, fault: str,
                      pods: list[dict[str, Any]], first_uid: int) -> list[Any]:  # fmt: skip
    """Admit `pods` while `fault` hits every pods and ConfigMap watch: the first half in
    chunks as the fault starts to land, the second half once it has met every process."""
    metric = LANDED_BY[fault]
    before = {
        (i, cache): counted(process, metric, cache) if metric else 0.0
        for i, process in enumerate(processes)
        for cache in CACHES
    }
    for path in WATCHED:
        emulator.fault("GET", path, **FAULTS[fault])
    half = len(pods) // 2
    results: list[Any] = []
    for start in range(0, half, CHUNK):
        chunk = pods[start : min(start + CHUNK, half)]
        results += admit_and_store(processes, core, chunk, first_uid + start)
    deadline = time.monotonic() + 60
    while not landed(emulator, processes, fault, before):
        assert time.monotonic() < deadline, f"{fault}: never met every process's watches"
        time.sleep(0.05)
    results += admit_and_store(processes, core, pods[half:], first_uid + half)
    emulator.clear_faults()
    return results


def live_pods(core: Any) -> dict[str, str]:
    """Pod name → VM name of every pod in `ns`."""
    return {
        p.metadata.name: p.metadata.annotations["vm.cocoonstack.io/name"]
        for p in core.list_namespaced_pod("ns").items
    }


def assert_consistent(core: Any, data: dict[str, str] | None = None) -> None:
    """No VM name carried by two live pods; every live pod's entry (in `data`, by default the
    pool's first ConfigMap) names it; entries unique."""
    pods = live_pods(core)
    doubled = [vm for vm, n in Counter(pods.values()).items() if n > 1]
    assert doubled == [], f"VM names handed out twice: {doubled}"
    stored = affinity_data(core) if data is None else data
    entries = {json.loads(v)["vmName"]: json.loads(v)["pod"] for v in stored.values()}
    for pod, vm in pods.items():
        assert entries.get(vm) == pod, f"{pod} ({vm}) lost its entry"


@pytest.mark.parametrize("fault", list(FAULTS))
def test_lagging_or_broken_watches_hand_out_nothing_twice(
    emulator: Any, core: Any, mutators: list[MutateProcess], fault: str
) -> None:
    # A burst of new replicas: dense, distinct slots while every cache is behind.
    pods = [cocoon_pod(rs=RS) for _ in range(BURST)]
    names = vm_names(burst_under_fault(emulator, mutators, core, fault, pods, 0))
    assert sorted(names) == sorted(f"vk-ns-demo-{slot}" for slot in range(BURST))
    assert_consistent(core)

    # Later, with the claims aged out (as after the in-flight window) once the caches have seen
    # every pod: a third of the pods go, and replacements plus new replicas arrive at once,
    # while the caches again lag behind (or lose) the deletions and the new pods.
    for process in mutators:
        wait_metric(process, "pods", BURST)
    data = affinity_data(core)
    aged = {k: json.dumps({**json.loads(v), "updatedAt": "2020-01-01T00:00:00Z"},
                          separators=(",", ":")) for k, v in data.items()}  # fmt: skip
    core.patch_namespaced_config_map(AFFINITY[1], AFFINITY[0], {"data": aged})
    for name in sorted(live_pods(core))[: BURST // 3]:
        core.delete_namespaced_pod(name, "ns", grace_period_seconds=0)
    pods = [cocoon_pod(rs=RS) for _ in range(BURST // 2)]
    vm_names(burst_under_fault(emulator, mutators, core, fault, pods, BURST))  # all reserved
    assert_consistent(core)
    assert len(live_pods(core)) == BURST - BURST // 3 + BURST // 2


def test_configmap_deleted_while_cached(
    emulator: Any, core: Any, mutators: list[MutateProcess]
) -> None:
    """Every process holds the ConfigMap in its cache when it is deleted; the next writes get
    404 (or 409 on the re-create race), re-read directly and create it once."""
    first = vm_names(admit_and_store(mutators, core, [cocoon_pod(name=f"w-{i}") for i in range(3)]))
    for process in mutators:
        wait_metric(process, "configmaps", 1)
    kubernetes.client.CoreV1Api(emulator.api_client()).delete_namespaced_config_map(
        AFFINITY[1], AFFINITY[0]
    )
    pods = [cocoon_pod(name=f"v-{i}") for i in range(BURST // 2)]
    names = vm_names(admit_and_store(mutators, core, pods, first_uid=10))
    assert sorted(names) == sorted(f"vk-ns-v-{i}" for i in range(BURST // 2))
    data = affinity_data(core)
    assert sorted(data) == sorted(f"ns._pod.v-{i}" for i in range(BURST // 2))
    assert len(first) == 3


def test_a_burst_across_the_split_places_every_identity_once(
    emulator: Any, core: Any, mutators: list[MutateProcess]
) -> None:
    """The pool's first ConfigMap is a few entries short of splitting when a burst of several
    Deployments and bare pods arrives over three processes reading from their caches: the split
    happens mid-burst, and still every identity lives in one ConfigMap, slots are dense and no
    VM name is handed out twice."""
    from datetime import UTC, datetime

    from common.decisions.shards import SHARDS, SPLIT_AT_BYTES
    from common.naming import SHARDS_ANNOTATION, affinity_labels
    from common.reservation import Reservation, data_bytes, encode

    # Old claims of pods long gone, in a namespace of their own: they only take room, up to
    # 10 bytes short of the split (the last one padded through its node's name). So the first
    # write of the burst crosses it, and holds one process's batch at most: ten identities of
    # the eighteen, so the rest must go to shards.
    def claim(i: int, node: str = "cocoon-a") -> tuple[str, str]:
        return f"seed._pod.p-{i}", encode(Reservation(
            pool="default", namespace="seed", deployment="", slot=0, vm_name=f"vk-seed-p-{i}",
            pod=f"p-{i}", node=node, updated_at=datetime(2020, 1, 1, tzinfo=UTC)))  # fmt: skip

    seed: dict[str, str] = {}
    while data_bytes(seed) < SPLIT_AT_BYTES - 1000:
        seed.update([claim(len(seed))])
    key, value = claim(len(seed), node="")
    pad = SPLIT_AT_BYTES - 10 - data_bytes(seed) - len(key) - len(value)
    seed.update([claim(len(seed), node="n" * pad)])
    assert data_bytes(seed) == SPLIT_AT_BYTES - 10
    meta = {"name": AFFINITY[1], "labels": affinity_labels("default")}
    core.create_namespaced_config_map(AFFINITY[0], {"metadata": meta, "data": seed})
    for process in mutators:
        wait_metric(process, "configmaps", 1)

    deployments = [f"d{i}" for i in range(6)]
    pods = [cocoon_pod(rs=f"{d}-7b7c9d9d5f") for d in deployments for _ in range(8)]
    pods += [cocoon_pod(name=f"solo-{i}") for i in range(12)]
    results = admit_and_store(mutators, core, pods)
    names = vm_names(results)
    assert len(set(names)) == len(pods)

    pool_configmaps = core.list_namespaced_config_map(
        AFFINITY[0], label_selector="cocoonstack.io/pool=default"
    )
    listed = {cm.metadata.name: cm for cm in pool_configmaps.items}
    assert listed[AFFINITY[1]].metadata.annotations == {SHARDS_ANNOTATION: str(SHARDS)}
    homes: dict[tuple[str, str], set[str]] = {}
    slots: dict[str, list[int]] = {}
    for name, cm in listed.items():
        for value in (cm.data or {}).values():
            entry = json.loads(value)
            if entry["namespace"] != "ns":
                continue
            homes.setdefault((entry["deployment"], entry["pod"] if not entry["deployment"]
                              else ""), set()).add(name)  # fmt: skip
            if entry["deployment"]:
                slots.setdefault(entry["deployment"], []).append(entry["slot"])
    assert all(len(where) == 1 for where in homes.values()), homes
    assert {d: sorted(s) for d, s in slots.items()} == {d: list(range(8)) for d in deployments}
    assert len(listed) > 1  # some identities went to shards
    assert_consistent(core, {k: v for cm in listed.values() for k, v in (cm.data or {}).items()})
