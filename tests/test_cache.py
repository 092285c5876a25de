"""The watch-fed caches and the paged LISTs, through ClientKubeApi against the emulator.

Each test scripts what a real API server does to a long-running watcher: more objects than one
page, compaction (410), a dropped connection, a lagging stream, silence.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest
from prometheus_client import REGISTRY

from common.cache import ClusterCaches, PodIndex, Reflector
from common.kube import LIST_PAGE_SIZE, ClientKubeApi, Gone, ListPage
from tests.cluster import add_node

PODS = 2 * LIST_PAGE_SIZE + 37  # three pages


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def pod(name: str, node: str = "", namespace: str = "ns", **meta: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": namespace, **meta}, "spec": spec}


@pytest.fixture
def core(emulator: Any) -> Any:
    api = kubernetes.client.CoreV1Api(emulator.api_client())
    api.create_namespace({"metadata": {"name": "ns"}})
    return api


@pytest.fixture
def kube(emulator: Any) -> ClientKubeApi:
    return ClientKubeApi(emulator.kubeconfig)


@pytest.fixture
def caches(kube: ClientKubeApi) -> Iterator[ClusterCaches]:
    made = ClusterCaches(kube, max_silence_s=5.0)
    yield made
    made.stop()


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, f"no sample {name}{labels}"
    return value


def lists_of(emulator: Any, path: str) -> list[dict[str, str]]:
    return [
        r["query"]
        for r in emulator.requests()
        if r["path"] == path and r["method"] == "GET" and r["query"].get("watch") != "true"
    ]


# --- paged LISTs ----------------------------------------------------------------------------------


def test_every_list_pages_through_more_than_one_page(
    emulator: Any, core: Any, kube: ClientKubeApi
) -> None:
    """Dropping the continue token would return one page; an unbounded LIST would show in the
    log as a request without `limit`."""
    emulator.create_many("/api/v1/namespaces/{namespace}/pods",
                         [pod(f"p{i:04}") for i in range(PODS)])  # fmt: skip
    emulator.clear_requests()
    listed = kube.list_pods("ns", "", 30)
    assert sorted(p.name for p in listed) == [f"p{i:04}" for i in range(PODS)]
    assert len(kube.list_pods(None, "", 30)) == PODS
    queries = lists_of(emulator, "/api/v1/namespaces/ns/pods") + lists_of(emulator, "/api/v1/pods")
    assert len(queries) == 6
    assert all(q["limit"] == str(LIST_PAGE_SIZE) for q in queries)
    assert sum("continue" in q for q in queries) == 4


def test_configmap_lists_page_too(emulator: Any, core: Any, kube: ClientKubeApi) -> None:
    emulator.create_many(
        "/api/v1/namespaces/{namespace}/configmaps",
        [{"metadata": {"name": f"cm{i:04}", "namespace": "ns", "labels": {"x": "y"}}}
         for i in range(LIST_PAGE_SIZE + 1)],
    )  # fmt: skip
    assert len(kube.list_configmaps("ns", "x=y", 30)) == LIST_PAGE_SIZE + 1


# --- the reflector --------------------------------------------------------------------------------


def test_cache_syncs_from_a_paged_list_and_follows_the_watch(
    emulator: Any, core: Any, caches: ClusterCaches
) -> None:
    add_node(core, "cocoon-a")
    add_node(core, "worker-1", pool=None)
    emulator.create_many("/api/v1/namespaces/{namespace}/pods",
                         [pod(f"p{i:04}", node="cocoon-a") for i in range(PODS)])  # fmt: skip
    caches.ensure_started()
    assert caches.wait_synced(30)
    assert len(caches.pods.in_namespace("ns")) == PODS
    assert [n.name for n in caches.nodes.in_pool("default")] == ["cocoon-a"]
    assert sum("continue" in q for q in lists_of(emulator, "/api/v1/pods")) == 2

    core.create_namespaced_pod("ns", pod("late", node="cocoon-a"))
    core.delete_namespaced_pod("p0000", "ns", grace_period_seconds=0)
    core.patch_namespaced_pod_status("p0001", "ns", {"status": {"phase": "Succeeded"}})
    wait_for(lambda: len(caches.pods.live_on("cocoon-a")) == PODS - 1, "the watch events")
    names = {p.name for p in caches.pods.in_namespace("ns")}
    assert "late" in names and "p0000" not in names
    live = caches.pods.live_keys_on("cocoon-a")  # what the picker counts: live pods only
    assert len(live) == PODS - 1
    assert ("ns", "late") in live and ("ns", "p0001") not in live
    assert not caches.stale()


def test_relists_after_410_and_misses_nothing(
    emulator: Any, core: Any, caches: ClusterCaches
) -> None:
    emulator.fault("GET", "/api/v1/pods", watch="gone")  # the first watch after the LIST
    core.create_namespaced_pod("ns", pod("before"))
    caches.ensure_started()
    assert caches.wait_synced(30)
    pods = caches.reflectors[0]
    wait_for(lambda: pods.relists == 1, "a relist")
    core.create_namespaced_pod("ns", pod("after"))
    wait_for(lambda: len(caches.pods.in_namespace("ns")) == 2, "the watch after the relist")
    assert len(lists_of(emulator, "/api/v1/pods")) == 2


def test_bookmarks_keep_a_quiet_cache_past_compaction(
    emulator: Any, core: Any, kube: ClientKubeApi
) -> None:
    """The nodes cache sees no event when a pod changes; the bookmarks still move its version,
    so after a compaction it resumes without a 410 and a full LIST."""
    caches = ClusterCaches(kube, max_silence_s=2.0)  # watches of about a second
    try:
        caches.ensure_started()
        assert caches.wait_synced(30)
        nodes = caches.reflectors[1]
        created = core.create_namespaced_pod("ns", pod("x")).metadata.resource_version
        wait_for(lambda: int(nodes.version) >= int(created), "a bookmark past the pod")
        emulator.compact()
        add_node(core, "cocoon-a")
        wait_for(lambda: [n.name for n in caches.nodes.in_pool("default")] == ["cocoon-a"], "node")
        assert nodes.relists == 0
    finally:
        caches.stop()


def test_dropped_watch_resumes_from_its_version_without_a_relist(
    emulator: Any, core: Any, kube: ClientKubeApi
) -> None:
    emulator.fault("GET", "/api/v1/pods", watch="drop", after=2)  # the first watch
    index = PodIndex()
    reflector = Reflector(kube, "pods", "/api/v1/pods", "", index, watch_timeout_s=30)
    reflector.start()
    try:
        assert reflector.wait_synced(30)
        for name in ("a", "b", "c", "d"):
            core.create_namespaced_pod("ns", pod(name))
        wait_for(lambda: len(index.in_namespace("ns")) == 4, "all four pods")
        watches = [r for r in emulator.requests() if r["query"].get("watch") == "true"]
        assert [w["status"] for w in watches][:1] == [200]  # the dropped one, logged on its start
        assert reflector.relists == 0
        assert len(lists_of(emulator, "/api/v1/pods")) == 1  # resumed, never relisted
        resumed_from = {w["query"]["resourceVersion"] for w in watches}
        assert len(resumed_from) == 2 or len(watches) == 1
    finally:
        reflector.stop()


def test_a_configmap_written_by_us_is_not_rolled_back_by_an_older_event(kube: Any) -> None:
    from common.cache import ConfigMapIndex
    from common.kube import ConfigMap

    index = ConfigMapIndex()
    index.remember(ConfigMap("cm", "cocoon-system", {"a": "2"}, resource_version="20"))
    index.apply("MODIFIED", ConfigMap("cm", "cocoon-system", {"a": "1"}, resource_version="19"),
                "19")  # fmt: skip
    assert index.get("cm") is not None and index.get("cm").data == {"a": "2"}  # type: ignore[union-attr]
    index.apply("DELETED", ConfigMap("cm", "cocoon-system", {}, resource_version="18"), "18")
    assert index.get("cm") is not None
    index.apply("DELETED", ConfigMap("cm", "cocoon-system", {}, resource_version="21"), "21")
    assert index.get("cm") is None


def test_a_silent_cache_is_stale(emulator: Any, core: Any, kube: ClientKubeApi) -> None:
    """A watch whose events (bookmarks included) are held back stops being heard from."""
    caches = ClusterCaches(kube, max_silence_s=1.5)
    try:
        caches.ensure_started()
        assert caches.wait_synced(30)
        wait_for(lambda: not caches.stale(), "a current cache")
        emulator.fault("GET", "/api/v1/nodes", watch="delay", delay=30, times=100)
        wait_for(lambda: caches.stale() == ["nodes"], "the nodes cache to go stale", 30)
    finally:
        caches.stop()
        emulator.clear_faults()


def test_readiness_waits_for_the_first_sync(emulator: Any, core: Any, kube: ClientKubeApi) -> None:
    import asyncio

    emulator.fault("GET", "/api/v1/nodes", delay=2)
    caches = ClusterCaches(kube, max_silence_s=5)
    try:
        ready, line = asyncio.run(caches.readiness())  # starts the caches
        assert not ready
        assert line.startswith("not ready: caches not synced yet (") and "nodes" in line
        # What an operator sees meanwhile: not synced, never heard from.
        assert sample("cocoon_webhook_cache_synced", cache="nodes") == 0
        assert math.isnan(sample("cocoon_webhook_cache_last_event_age_seconds", cache="nodes"))
        wait_for(lambda: asyncio.run(caches.readiness())[0], "readiness")
        assert sample("cocoon_webhook_cache_synced", cache="nodes") == 1
        assert 0 <= sample("cocoon_webhook_cache_last_event_age_seconds", cache="nodes") < 5
    finally:
        caches.stop()


def test_a_forked_child_starts_caches_of_its_own(
    emulator: Any, kube: ClientKubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads do not survive a fork: caches built and started in a parent (gunicorn's, were
    the module loaded there) are rebuilt and started again in the serving child."""
    import common.cache

    caches = ClusterCaches(kube, max_silence_s=5)
    try:
        caches.ensure_started()
        parents = caches.reflectors
        caches.ensure_started()
        assert caches.reflectors is parents  # same process: started once
        monkeypatch.setattr(common.cache.os, "getpid", lambda: -1)
        caches.ensure_started()
        assert all(new is not old for new, old in zip(caches.reflectors, parents, strict=True))
        assert caches.wait_synced(30)
    finally:
        for reflector in parents:
            reflector.stop()
        caches.stop()


class ScriptedKube:
    """Just what a Reflector calls: LISTs of one empty page, and watches that play `script` in
    turn (an exception to raise, or events to yield), then end quietly."""

    def __init__(self, script: list[Exception | list[dict[str, Any]]]) -> None:
        self.script = script
        self.listed_at: list[float] = []
        self.watches = 0

    def list_page(self, collection: str, selector: str, token: str, timeout: float) -> ListPage:
        self.listed_at.append(time.monotonic())
        return ListPage([], str(len(self.listed_at)), "")

    def watch(self, collection: str, selector: str, version: str, timeout_s: int
              ) -> Iterator[dict[str, Any]]:  # fmt: skip
        step = self.script[self.watches] if self.watches < len(self.script) else []
        self.watches += 1
        if isinstance(step, Exception):
            raise step
        yield from step
        time.sleep(0.05)


def test_a_reflector_outlives_what_no_api_server_should_send() -> None:
    """An exception the client was not expected to raise (a bug, a line that is not an event)
    counts as a failed watch; the thread goes on and the cache keeps following."""
    added = {"type": "ADDED", "object": {"metadata": {"name": "p", "namespace": "ns",
                                                      "resourceVersion": "5"}}}  # fmt: skip
    kube = ScriptedKube([AttributeError("'NoneType' object has no attribute 'get'"), [added]])
    index = PodIndex()
    reflector = Reflector(kube, "scripted", "/api/v1/pods", "", index, watch_timeout_s=30)  # type: ignore[arg-type]
    reflector.start()
    try:
        wait_for(lambda: len(index.in_namespace("ns")) == 1, "the pod after the failure")
        assert reflector.version == "5" and reflector.relists == 0
    finally:
        reflector.stop()


def test_410s_in_a_row_back_off_instead_of_relisting_in_a_loop() -> None:
    """A 410 after a watch that heard events relists at once (compaction); 410s with nothing
    heard in between (a server that expires every fresh LIST's version) wait, doubling: each
    LIST may be the whole cluster's pods."""
    gone = [Gone("watch /api/v1/pods: too old resource version", 410) for _ in range(4)]
    kube = ScriptedKube(list(gone))
    reflector = Reflector(kube, "scripted", "/api/v1/pods", "", PodIndex(), watch_timeout_s=30)  # type: ignore[arg-type]
    reflector.start()
    try:
        wait_for(lambda: len(kube.listed_at) == 5, "four relists")
        gaps = [b - a for a, b in itertools.pairwise(kube.listed_at)]
        # Waits of 0, then 0.4, 0.8, 1.6 s jittered down to half at most.
        for gap, least in zip(gaps[1:], (0.2, 0.4, 0.8), strict=True):
            assert gap >= least, gaps
        assert reflector.relists == 4
    finally:
        reflector.stop()
