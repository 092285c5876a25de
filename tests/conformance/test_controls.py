"""The emulator's own test controls (/_emulator/...): request log, faults, reset.

Not Kubernetes behaviour, so skipped with --real-cluster; they mirror what tests need from a
cluster they cannot break on purpose (the API-call budgets of SPEC 13, failure paths).
"""

from __future__ import annotations

import time

import pytest
import urllib3
from kubernetes import client

from tests.conformance.helpers import configmap
from tests.kube_emulator.launcher import EmulatorProcess


def test_request_log_records_method_path_query_status(
    controls: EmulatorProcess, core: client.CoreV1Api, ns: str
) -> None:
    """Every API request is logged with its method, path, query and status, in order."""
    controls.clear_requests()
    core.create_namespaced_config_map(ns, configmap("logged"))
    core.list_namespaced_config_map(ns, label_selector="a=b", limit=5)
    with pytest.raises(client.ApiException):
        core.read_namespaced_config_map("absent", ns)
    log = controls.requests()
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("POST", f"/api/v1/namespaces/{ns}/configmaps", 201),
        ("GET", f"/api/v1/namespaces/{ns}/configmaps", 200),
        ("GET", f"/api/v1/namespaces/{ns}/configmaps/absent", 404),
    ]
    assert log[1]["query"] == {"labelSelector": "a=b", "limit": "5"}


def test_clear_requests(controls: EmulatorProcess, core: client.CoreV1Api, ns: str) -> None:
    """DELETE /_emulator/requests empties the log; control calls are never logged."""
    core.list_namespaced_config_map(ns)
    controls.clear_requests()
    controls.requests()
    assert controls.requests() == []


def test_fault_status_for_the_next_requests(
    controls: EmulatorProcess, core: client.CoreV1Api, ns: str
) -> None:
    """A scripted status answers the next N matching requests, then the API is back."""
    core.create_namespaced_config_map(ns, configmap("f"))
    controls.fault("GET", f"/api/v1/namespaces/{ns}/configmaps/*", status=503, times=2)
    for _ in range(2):
        with pytest.raises(client.ApiException) as exc:
            core.read_namespaced_config_map("f", ns)
        assert exc.value.status == 503
    assert core.read_namespaced_config_map("f", ns).metadata.name == "f"


def test_fault_matches_method_and_path(
    controls: EmulatorProcess, core: client.CoreV1Api, ns: str
) -> None:
    """Only the scripted method and path pattern are affected."""
    core.create_namespaced_config_map(ns, configmap("m", {"a": "1"}))
    controls.fault("PUT", f"/api/v1/namespaces/{ns}/configmaps/m", status=409)
    core.read_namespaced_config_map("m", ns)
    core.list_namespaced_config_map(ns)
    with pytest.raises(client.ApiException) as exc:
        core.replace_namespaced_config_map("m", ns, configmap("m", {"a": "2"}))
    assert exc.value.status == 409
    assert core.replace_namespaced_config_map("m", ns, configmap("m", {"a": "2"})).data == {
        "a": "2"
    }


def test_fault_delay(controls: EmulatorProcess, core: client.CoreV1Api, ns: str) -> None:
    """A delay slows the real answer down."""
    controls.fault("GET", f"/api/v1/namespaces/{ns}/configmaps", delay=0.3)
    began = time.monotonic()
    core.list_namespaced_config_map(ns)
    assert time.monotonic() - began >= 0.3


def test_fault_drop_closes_the_connection(
    controls: EmulatorProcess, core: client.CoreV1Api, ns: str
) -> None:
    """`drop` closes the connection without an answer; the request is not served."""
    controls.fault("POST", f"/api/v1/namespaces/{ns}/configmaps", drop=True)
    with pytest.raises((urllib3.exceptions.HTTPError, ConnectionError, OSError)):
        core.create_namespaced_config_map(ns, configmap("dropped"))
    with pytest.raises(client.ApiException) as exc:
        core.read_namespaced_config_map("dropped", ns)
    assert exc.value.status == 404
    assert any(r["status"] == 0 for r in controls.requests())


def test_reset_empties_the_store(controls: EmulatorProcess, core: client.CoreV1Api) -> None:
    """POST /_emulator/reset drops every object and re-seeds the namespaces."""
    core.create_namespace({"metadata": {"name": "reset-me"}})
    controls.reset("namespaces")
    names = sorted(n.metadata.name for n in core.list_namespace().items)
    assert names == ["cocoon-system", "default"]
