"""The emulator's own test controls (/_emulator/...): request log, faults, reset.

Not Kubernetes behaviour, so skipped with --real-cluster; they mirror what tests need from a
cluster they cannot break on purpose (the API-call budgets of SPEC 13, failure paths).
"""

from __future__ import annotations

import time
import urllib.error

import pytest
import urllib3
from kubernetes import client, config

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


def unretried(controls: EmulatorProcess) -> client.CoreV1Api:
    """A client that sees every answer: urllib3 by default repeats an idempotent request whose
    answer was lost, or that came with a Retry-After."""
    settings = client.Configuration()
    config.load_kube_config(config_file=controls.kubeconfig, client_configuration=settings)
    settings.retries = False
    return client.CoreV1Api(client.ApiClient(settings))


def test_fault_lose_answer_applies_the_request_and_drops_the_answer(
    controls: EmulatorProcess, core: client.CoreV1Api, ns: str
) -> None:
    """`loseAnswer`: the write lands, the client gets no answer; the log keeps its status."""
    core.create_namespaced_config_map(ns, configmap("lost", {"a": "1"}))
    stale = core.read_namespaced_config_map("lost", ns)
    controls.fault("PUT", f"/api/v1/namespaces/{ns}/configmaps/lost", lose_answer=True)
    controls.clear_requests()
    stale.data = {"a": "2"}
    with pytest.raises((urllib3.exceptions.HTTPError, ConnectionError, OSError)):
        unretried(controls).replace_namespaced_config_map("lost", ns, stale)
    assert core.read_namespaced_config_map("lost", ns).data == {"a": "2"}
    assert [(r["method"], r["status"]) for r in controls.requests()] == [("PUT", 200), ("GET", 200)]
    # The same write again, as a client retrying it would send: the resourceVersion moved on.
    with pytest.raises(client.ApiException) as exc:
        core.replace_namespaced_config_map("lost", ns, stale)
    assert exc.value.status == 409


@pytest.mark.parametrize("retry_after", [None, 0, 3])
def test_fault_retry_after_header(
    controls: EmulatorProcess, core: client.CoreV1Api, ns: str, retry_after: int | None
) -> None:
    """A status fault carries Retry-After only when asked to."""
    controls.fault("GET", f"/api/v1/namespaces/{ns}/configmaps", status=429,
                   retry_after=retry_after)  # fmt: skip
    with pytest.raises(client.ApiException) as exc:
        unretried(controls).list_namespaced_config_map(ns)
    assert exc.value.status == 429
    expected = None if retry_after is None else str(retry_after)
    assert exc.value.headers.get("Retry-After") == expected


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500, "loseAnswer": True},
        {"drop": True, "loseAnswer": True},
        {"retryAfter": 1},
        {"status": 429, "retryAfter": -1},
        {"status": 429, "retryAfter": "1"},
    ],
)
def test_fault_combinations_that_make_no_sense_are_refused(
    controls: EmulatorProcess, fault: dict[str, object]
) -> None:
    with pytest.raises(urllib.error.HTTPError) as exc:
        controls._control("POST", "faults", {"method": "GET", "path": "/x", **fault})
    assert exc.value.code == 400
    assert controls._control("GET", "faults") == []


def test_reset_empties_the_store(controls: EmulatorProcess, core: client.CoreV1Api) -> None:
    """POST /_emulator/reset drops every object and re-seeds the namespaces."""
    core.create_namespace({"metadata": {"name": "reset-me"}})
    controls.reset("namespaces")
    names = sorted(n.metadata.name for n in core.list_namespace().items)
    assert names == ["cocoon-system", "default"]
