"""Watch: events from a resourceVersion, timeouts, selectors, 410 for compacted versions.

Upstream: k8s.io/apiserver/pkg/storage/cacher (watch semantics), endpoints/handlers/watch.go.
"""

from __future__ import annotations

import threading
import time

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
