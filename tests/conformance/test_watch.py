"""Watch: events from a resourceVersion, timeouts, selectors, 410 for compacted versions.

Upstream: k8s.io/apiserver/pkg/storage/cacher (watch semantics), endpoints/handlers/watch.go.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kubernetes import client, watch

from tests.conformance.conftest import Cluster
from tests.conformance.helpers import configmap


def collect(
    core: client.CoreV1Api, ns: str, *, seconds: int, expect: int = 0, **kwargs: object
) -> list[tuple[str, str]]:
    """Events until `expect` arrived (0: until the server ends the watch after `seconds`)."""
    w = watch.Watch()
    events = []
    for ev in w.stream(core.list_namespaced_config_map, ns, timeout_seconds=seconds, **kwargs):
        events.append((ev["type"], ev["object"].metadata.name))
        if expect and len(events) >= expect:
            w.stop()
    return events


def test_watch_from_resource_version_sees_changes_in_order(core: client.CoreV1Api, ns: str) -> None:
    """Events newer than the given resourceVersion arrive in order: ADDED, MODIFIED, DELETED."""
    start = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, configmap("w", {"a": "1"}))
    core.patch_namespaced_config_map("w", ns, {"data": {"a": "2"}})
    core.delete_namespaced_config_map("w", ns)
    events = collect(core, ns, seconds=5, expect=3, resource_version=start)
    assert [e for e in events if e[1] == "w"] == [
        ("ADDED", "w"),
        ("MODIFIED", "w"),
        ("DELETED", "w"),
    ]


def test_watch_without_resource_version_starts_with_current_state(
    core: client.CoreV1Api, ns: str
) -> None:
    """Without resourceVersion, a watch first sends ADDED for every existing object."""
    core.create_namespaced_config_map(ns, configmap("old1", labels={"probe": "w"}))
    core.create_namespaced_config_map(ns, configmap("old2", labels={"probe": "w"}))
    events = collect(core, ns, seconds=5, expect=2, label_selector="probe")
    assert sorted(events) == [("ADDED", "old1"), ("ADDED", "old2")]


def test_watch_sees_live_events(core: client.CoreV1Api, ns: str) -> None:
    """A write made while the watch is open reaches it promptly."""
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    seen = threading.Event()

    def run() -> None:
        w = watch.Watch()
        for ev in w.stream(
            core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=10
        ):
            if ev["object"].metadata.name == "live":
                seen.set()
                w.stop()

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.2)
    core.create_namespaced_config_map(ns, configmap("live"))
    assert seen.wait(5)
    t.join(10)


def test_watch_timeout_ends_the_stream(core: client.CoreV1Api, ns: str) -> None:
    """timeoutSeconds closes the watch cleanly."""
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    began = time.monotonic()
    assert collect(core, ns, seconds=1, resource_version=rv) == []
    assert time.monotonic() - began < 5


def test_label_selected_watch_reports_objects_leaving_as_deleted(
    core: client.CoreV1Api, ns: str
) -> None:
    """An object that stops matching the selector arrives as DELETED, one that starts as ADDED."""
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, configmap("sel", labels={"watch": "yes"}))
    core.patch_namespaced_config_map("sel", ns, {"metadata": {"labels": {"watch": "no"}}})
    core.patch_namespaced_config_map("sel", ns, {"metadata": {"labels": {"watch": "yes"}}})
    events = collect(core, ns, seconds=5, expect=3, resource_version=rv, label_selector="watch=yes")
    assert events == [("ADDED", "sel"), ("DELETED", "sel"), ("ADDED", "sel")]


def test_watch_one_object_by_name(core: client.CoreV1Api, ns: str) -> None:
    """fieldSelector=metadata.name=<n> watches a single object."""
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, configmap("one"))
    core.create_namespaced_config_map(ns, configmap("other"))
    events = collect(core, ns, seconds=1, resource_version=rv, field_selector="metadata.name=one")
    assert events == [("ADDED", "one")]


def test_too_old_resource_version_is_gone(
    cluster: Cluster, core: client.CoreV1Api, ns: str
) -> None:
    """A resourceVersion older than the watch history ends with ERROR 410 (Expired)."""
    if cluster.control_plane is not None:
        pytest.skip("a just-started kube-apiserver's watch cache still holds rv 1 (no 410 yet)")
    core.create_namespaced_config_map(ns, configmap("x"))
    if cluster.emulator is not None:
        cluster.emulator.compact()  # a long-running cluster compacted rv 1 long ago
    with pytest.raises(client.ApiException) as exc:
        collect(core, ns, seconds=2, resource_version="1")
    assert exc.value.status == 410


# --- emulator only: bookmarks on a quiet watch, and the faults tests script for watches ---------


@pytest.fixture
def emulator_only(cluster: Cluster) -> Any:
    if cluster.emulator is None:
        pytest.skip("scripted faults and the bookmark interval are the emulator's")
    yield cluster.emulator
    cluster.emulator.clear_faults()


def raw_events(core: client.CoreV1Api, ns: str, rv: str, seconds: int, **kwargs: Any) -> list[Any]:
    """(type, name or bookmark resourceVersion) of each event, bookmarks included."""
    w = watch.Watch()
    out = []
    for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv,
                       timeout_seconds=seconds, allow_watch_bookmarks=True, **kwargs):  # fmt: skip
        meta = ev["raw_object"]["metadata"]
        out.append((ev["type"], meta.get("name") or meta["resourceVersion"]))
    return out


def test_quiet_watch_gets_bookmarks_with_the_current_version(
    emulator_only: Any, core: client.CoreV1Api, ns: str
) -> None:
    """Bookmarks carry the store's resourceVersion, so a watcher of a quiet collection can
    resume from a recent version instead of a compacted one."""
    core.create_namespaced_config_map(ns, configmap("before"))
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespace({"metadata": {"name": f"{ns}-elsewhere"}})  # a change it does not see
    latest = core.list_namespace().metadata.resource_version
    events = raw_events(core, ns, rv, seconds=3)
    assert ("BOOKMARK", latest) in events
    assert all(kind == "BOOKMARK" for kind, _ in events)


def test_dropped_watch_ends_without_the_closing_chunk(
    emulator_only: Any, core: client.CoreV1Api, ns: str
) -> None:
    """`watch: drop` streams `after` events, then resets the connection."""
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    for name in ("a", "b", "c"):
        core.create_namespaced_config_map(ns, configmap(name))
    emulator_only.fault("GET", f"/api/v1/namespaces/{ns}/configmaps", watch="drop", after=2)
    seen = []
    with pytest.raises(Exception) as failure:  # urllib3 ProtocolError or a reset, as it lands
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv,
                           timeout_seconds=5):  # fmt: skip
            seen.append(ev["object"].metadata.name)
    assert not isinstance(failure.value, client.ApiException)
    assert seen == ["a", "b"]
    # The fault is spent: the next watch streams everything.
    assert [n for _, n in raw_events(core, ns, rv, seconds=1) if n in "abc"] == ["a", "b", "c"]


def test_delayed_watch_lags_behind_the_store(
    emulator_only: Any, core: client.CoreV1Api, ns: str
) -> None:
    """`watch: delay` holds each event back: a write is readable at once but seen late."""
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    emulator_only.fault("GET", f"/api/v1/namespaces/{ns}/configmaps", watch="delay", delay=1.0)
    arrived: dict[str, float] = {}

    def run() -> None:
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv,
                           timeout_seconds=6):  # fmt: skip
            arrived[ev["object"].metadata.name] = time.monotonic()
            if len(arrived) == 2:
                w.stop()

    thread = threading.Thread(target=run)
    thread.start()
    written = time.monotonic()
    core.create_namespaced_config_map(ns, configmap("late1"))
    core.create_namespaced_config_map(ns, configmap("late2"))
    thread.join(20)
    assert sorted(arrived) == ["late1", "late2"]
    assert arrived["late1"] - written >= 1.0
    assert arrived["late2"] - written >= 2.0  # held back one after the other


def test_gone_watch_fault_answers_an_expired_error_event(
    emulator_only: Any, core: client.CoreV1Api, ns: str
) -> None:
    """`watch: gone` is a 410 inside a 200 stream, as a real API server reports it."""
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    emulator_only.fault("GET", f"/api/v1/namespaces/{ns}/configmaps", watch="gone")
    with pytest.raises(client.ApiException) as exc:
        collect(core, ns, seconds=2, resource_version=rv)
    assert exc.value.status == 410
    assert collect(core, ns, seconds=1, resource_version=rv) == []  # spent: a normal watch
