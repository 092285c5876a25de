"""Pools past one ConfigMap (docs/pools.md): the split, homes of identities, and the reaper.

The limits are scaled down (the first ConfigMap splits at 30 kB instead of 768 KiB, a shard is
full at 40 kB instead of 1 MiB) so a pool of a few thousand entries behaves as 20,000 would;
bench/scale_bench.py admits and sweeps a real 20,000-entry pool.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from common import reaper
from common.affinity import AffinityStore
from common.config import Settings
from common.decisions import mutate, shards
from common.decisions.mutate import Draft, Failed, plan
from common.kube import ConfigMap
from common.naming import SHARDS_ANNOTATION, affinity_shard
from common.pod import decode_pod
from tests.cluster import cocoon_pod
from tests.fakes import FakeKube
from tests.test_affinity import NOW, WINDOW, node

SPLIT_AT = 30_000
FULL_AT = 40_000
ROOT = "cocoon-affinity-default"


@pytest.fixture(autouse=True)
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shards, "SPLIT_AT_BYTES", SPLIT_AT)
    monkeypatch.setattr(mutate, "CONFIGMAP_DATA_LIMIT", FULL_AT)


@pytest.fixture
def kube() -> FakeKube:
    fake = FakeKube()
    fake.nodes = [node("cocoon-a"), node("cocoon-b")]
    return fake


def intent(
    name: str = "", rs: str | None = None, namespace: str = "ns", pool: str | None = None
) -> mutate.Intent:
    pod = cocoon_pod(name=name, rs=rs, namespace=namespace, pool=pool)
    if rs and name:
        pod["metadata"]["name"] = name
    made = plan("CREATE", "Pod", namespace, name, decode_pod(pod))
    assert isinstance(made, mutate.Intent)
    return made


def reserve(store: AffinityStore, what: mutate.Intent) -> Draft:
    import time

    result = store.reserve(what, time.monotonic() + 30, dry_run=False)
    assert isinstance(result, Draft), result
    return result


def configmaps(kube: FakeKube) -> dict[str, ConfigMap]:
    return {name: cm for (_, name), cm in kube.configmaps.items()}


def homes(kube: FakeKube) -> dict[tuple[str, str, str], set[str]]:
    """Identity → the ConfigMaps holding an entry of it."""
    found: dict[tuple[str, str, str], set[str]] = {}
    for name, cm in configmaps(kube).items():
        for value in cm.data.values():
            entry = json.loads(value)
            kind = "deployment" if entry["deployment"] else "pod"
            ident = (kind, entry["namespace"], entry["deployment"] or entry["pod"])
            found.setdefault(ident, set()).add(name)
    return found


def test_a_small_pool_keeps_one_configmap_the_go_original_reads(kube: FakeKube) -> None:
    store = AffinityStore(kube, WINDOW, clock=lambda: NOW)
    for i in range(20):
        reserve(store, intent(f"w-{i}"))
    assert list(configmaps(kube)) == [ROOT]
    assert SHARDS_ANNOTATION not in configmaps(kube)[ROOT].annotations


def test_the_pool_splits_and_grows_past_one_configmap(kube: FakeKube) -> None:
    store = AffinityStore(kube, WINDOW, clock=lambda: NOW)
    early = [intent(rs=f"d{i}-7b7c9d9d5f", name=f"d{i}-first") for i in range(5)]
    for made in early:
        reserve(store, made)
    names = {reserve(store, intent(f"w-{i}")).reservation.vm_name for i in range(1500)}
    assert len(names) == 1500
    cms = configmaps(kube)
    assert cms[ROOT].annotations[SHARDS_ANNOTATION] == str(shards.SHARDS)
    assert len(cms) == shards.SHARDS  # every shard in use, none past its limit
    assert all(len(json.dumps(cm.data)) < FULL_AT for cm in cms.values())
    # Deployments that were in the first ConfigMap before the split stay there: their next
    # replica gets the next slot next to the first, not a fresh slot 0 in another shard.
    for i in range(len(early)):
        second = reserve(store, intent(rs=f"d{i}-7b7c9d9d5f", name=f"d{i}-second"))
        assert second.reservation.slot == 1
        assert f"ns.d{i}.1" in configmaps(kube)[ROOT].data
    # After the split, each new identity went to its CRC-32 shard, and nowhere else.
    placed = homes(kube)
    assert all(len(where) == 1 for where in placed.values())
    for i in range(1500):
        (where,) = placed[("pod", "ns", f"w-{i}")]
        shard = affinity_shard("ns", None, f"w-{i}", shards.SHARDS)
        assert where in (ROOT, f"cocoon-affinity.default.{shard}" if shard else ROOT)


def test_replicas_racing_across_the_split_never_place_an_identity_twice(kube: FakeKube) -> None:
    replicas = [AffinityStore(kube, WINDOW, clock=lambda: NOW) for _ in range(3)]
    results: list[Draft | Failed] = []
    lock = threading.Lock()

    def admit(index: int) -> None:
        import time

        # Ten pods per Deployment, spread over the replicas: slots of one identity race too.
        made = intent(rs=f"d{index // 10}-7b7c9d9d5f", name=f"p-{index}")
        result = replicas[index % 3].reserve(made, time.monotonic() + 30, dry_run=False)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=admit, args=(i,)) for i in range(600)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(isinstance(r, Draft) for r in results), Counter(
        r.reason for r in results if isinstance(r, Failed)
    )
    assert SHARDS_ANNOTATION in configmaps(kube)[ROOT].annotations
    assert all(len(where) == 1 for where in homes(kube).values())
    vm_names = [r.reservation.vm_name for r in results if isinstance(r, Draft)]
    assert len(set(vm_names)) == 600
    for d in range(60):  # dense slots per Deployment
        slots = sorted(
            r.reservation.slot
            for r in results
            if isinstance(r, Draft) and r.reservation.deployment == f"d{d}"
        )
        assert slots == list(range(10))


def test_the_reaper_sweeps_every_configmap_of_a_split_pool(kube: FakeKube) -> None:
    store = AffinityStore(kube, WINDOW, clock=lambda: NOW)
    for i in range(800):
        reserve(store, intent(f"w-{i}"))
    assert len(configmaps(kube)) > 1
    settings = Settings.from_env({"REAPER_GRACE": "30m", "AFFINITY_INFLIGHT_WINDOW": "30s"})
    later = NOW + timedelta(minutes=5)
    first = reaper.sweep(kube, settings, later)
    # One pool, however many ConfigMaps it spans.
    assert (first.pools, first.marked, first.errors) == (1, 800, 0)
    done = reaper.sweep(kube, settings, later + timedelta(minutes=31))
    assert done.released == 800
    assert all(cm.data == {} for cm in configmaps(kube).values())


def test_pure_home_rules() -> None:
    made = intent("web-0")
    first = frozenset({("pod", "ns", "web-0")})
    assert shards.home_shard(made, 1, frozenset()) == 0
    assert shards.home_shard(made, 16, first) == 0  # still in the first ConfigMap
    assert shards.home_shard(made, 16, frozenset()) == affinity_shard("ns", None, "web-0", 16)
    assert shards.shard_count({SHARDS_ANNOTATION: "16"}) == 16
    for bad in ("", "0", "x", "-3", "99999"):
        assert shards.shard_count({SHARDS_ANNOTATION: bad}) == 1
    assert shards.should_split({}, SPLIT_AT)
    assert not shards.should_split({SHARDS_ANNOTATION: "16"}, 10 * SPLIT_AT)
    assert not shards.should_split({}, SPLIT_AT - 1)


def test_identities_of_entries(kube: Any) -> None:
    value = ('{"pool":"default","namespace":"ns","deployment":"demo","slot":0,"vmName":"v",'
             '"pod":"p","node":"","updatedAt":"2026-01-01T00:00:00Z"}')  # fmt: skip
    assert shards.identities({"ns.demo.0": value, "junk": "x"}) == {("deployment", "ns", "demo")}


@pytest.fixture
def cached(emulator: Any) -> Iterator[tuple[Any, Any, Any, AffinityStore]]:
    """The emulator with two pool nodes, and a store reading through synced caches: (core API,
    ClientKubeApi, caches, store)."""
    import kubernetes

    from common.cache import ClusterCaches
    from common.kube import ClientKubeApi
    from tests.cluster import add_node

    core = kubernetes.client.CoreV1Api(emulator.api_client())
    core.create_namespace({"metadata": {"name": "ns"}})
    add_node(core, "cocoon-a")
    add_node(core, "cocoon-b")
    kube = ClientKubeApi(emulator.kubeconfig)
    caches = ClusterCaches(kube, max_silence_s=10)
    store = AffinityStore(kube, timedelta(hours=1), clock=lambda: NOW, caches=caches)
    try:
        caches.ensure_started()
        assert caches.wait_synced(30)
        yield core, kube, caches, store
    finally:
        caches.stop()


def test_a_split_pool_served_from_the_caches(
    emulator: Any, cached: tuple[Any, Any, Any, AffinityStore]
) -> None:
    """Against the emulator with the watch-fed caches: the split, one write per admission once
    the caches know the layout, and picks balanced over the whole pool, not per shard."""
    import time

    _, kube, caches, store = cached
    drafts = []
    for i in range(400):
        drafts.append(reserve(store, intent(f"w-{i}")))
        if i == 300:  # split long ago: wait until the cache has every shard it wrote
            deadline = time.monotonic() + 10
            while len(caches.configmaps) < len(kube.list_configmaps("cocoon-system", "", 5)):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            emulator.clear_requests()
    writes = [r for r in emulator.requests() if r["query"].get("watch") != "true"]
    assert all(r["method"] in ("PUT", "POST") for r in writes), writes
    assert len(writes) == 99  # one per admission, nothing read
    listed = {cm.name: cm for cm in kube.list_configmaps("cocoon-system", "", 5)}
    assert listed[ROOT].annotations[SHARDS_ANNOTATION] == str(shards.SHARDS)
    assert len(listed) == shards.SHARDS
    # Every claim is in flight (an hour's window): the picks alternate over the pool.
    counts = Counter(d.reservation.node for d in drafts)
    assert abs(counts["cocoon-a"] - counts["cocoon-b"]) <= 1, counts


def test_a_dry_run_plans_in_the_identitys_shard_without_caches(kube: FakeKube) -> None:
    """Read directly (no caches, or silent ones), a dry run finds the identity's home the way
    the real admission does: past the first ConfigMap, into its shard."""
    import time

    store = AffinityStore(kube, WINDOW, clock=lambda: NOW)
    for i in range(800):
        reserve(store, intent(f"w-{i}"))
    assert SHARDS_ANNOTATION in configmaps(kube)[ROOT].annotations
    for i in range(2):
        reserve(store, intent(rs="late-7b7c9d9d5f", name=f"late-{i}"))
    (home,) = homes(kube)[("deployment", "ns", "late")]
    assert home != ROOT
    before = {name: dict(cm.data) for name, cm in configmaps(kube).items()}
    planned = store.reserve(intent(rs="late-7b7c9d9d5f", name="late-2"), time.monotonic() + 30,
                            dry_run=True)  # fmt: skip
    assert isinstance(planned, Draft) and planned.key == "ns.late.2", planned
    assert {name: dict(cm.data) for name, cm in configmaps(kube).items()} == before


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_split_pool_whose_first_configmap_was_deleted_stays_split(
    kube: FakeKube, dry_run: bool
) -> None:
    """Deleting the first ConfigMap (and its split mark) leaves the shards in place: an identity
    living in a shard keeps its home there, or its next replica would be planned in a fresh
    first ConfigMap, blind to the shard's claims, and get a VM name already handed out."""
    import time

    store = AffinityStore(kube, WINDOW, clock=lambda: NOW)
    for i in range(800):
        reserve(store, intent(f"w-{i}"))
    for i in range(2):
        reserve(store, intent(rs="late-7b7c9d9d5f", name=f"late-{i}"))
    (home,) = homes(kube)[("deployment", "ns", "late")]
    assert home != ROOT
    del kube.configmaps["cocoon-system", ROOT]
    planned = store.reserve(intent(rs="late-7b7c9d9d5f", name="late-2"), time.monotonic() + 30,
                            dry_run=dry_run)  # fmt: skip
    assert isinstance(planned, Draft) and planned.key == "ns.late.2", planned
    if not dry_run:
        assert homes(kube)[("deployment", "ns", "late")] == {home}
        # The first ConfigMap is back, empty and marked, so later admissions read no more.
        first = configmaps(kube)[ROOT]
        assert (first.data, first.annotations) == ({}, {SHARDS_ANNOTATION: str(shards.SHARDS)})
    else:
        assert ROOT not in configmaps(kube)


def test_a_split_pool_whose_first_configmap_was_deleted_while_cached(
    cached: tuple[Any, Any, Any, AffinityStore],
) -> None:
    """The same through the caches: they saw the first ConfigMap go, and still know the
    shards, so the next admission marks it split again instead of starting it afresh."""
    import time

    core, kube, caches, store = cached
    for i in range(300):
        reserve(store, intent(f"w-{i}"))
    for i in range(2):
        reserve(store, intent(rs="late-7b7c9d9d5f", name=f"late-{i}"))
    core.delete_namespaced_config_map(ROOT, "cocoon-system")
    deadline = time.monotonic() + 10
    while caches.configmaps.get(ROOT) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert reserve(store, intent(rs="late-7b7c9d9d5f", name="late-2")).key == "ns.late.2"
    listed = {cm.name: cm for cm in kube.list_configmaps("cocoon-system", "", 5)}
    assert listed[ROOT].annotations == {SHARDS_ANNOTATION: str(shards.SHARDS)}
    late = [n for n, cm in listed.items() if any(k.startswith("ns.late.") for k in cm.data)]
    assert len(late) == 1 and late[0] != ROOT


def test_a_shard_is_never_another_pools_configmap(kube: FakeKube) -> None:
    """Pools `gpu` and `gpu-1` side by side: `gpu`'s shards must not be named as `gpu-1`'s first
    ConfigMap, or the two pools share one (labels flipping, one pool's entries filling the
    other's room)."""
    kube.nodes += [node("gpu-a", pool="gpu"), node("gpu1-a", pool="gpu-1")]
    store = AffinityStore(kube, WINDOW, clock=lambda: NOW)
    for i in range(800):
        reserve(store, intent(f"w-{i}", pool="gpu"))
        reserve(store, intent(f"v-{i}", pool="gpu-1"))
    for name, cm in configmaps(kube).items():
        pools = {json.loads(value)["pool"] for value in cm.data.values()}
        assert pools == {cm.labels["cocoonstack.io/pool"]}, name
