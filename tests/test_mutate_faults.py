"""mutate under API faults (emulator fault injection): always an answer within the deadline,
never a 5xx, never a partial or duplicate reservation (SPEC 5.10, 5.11)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from starlette.testclient import TestClient

from tests.cluster import add_node, affinity_data, cocoon_pod, pod_review
from tests.functions_app import function_client
from tests.helpers import admission_count, patch_of, response_of

CM_PATH = "/api/v1/namespaces/cocoon-system/configmaps/cocoon-affinity-default"
DEADLINE_S = 1.0


@pytest.fixture
def core(emulator: Any) -> Any:
    api = kubernetes.client.CoreV1Api(emulator.api_client())
    api.create_namespace({"metadata": {"name": "ns"}})
    add_node(api, "cocoon-a")
    add_node(api, "cocoon-b")
    return api


@pytest.fixture
def mutate(emulator: Any, core: Any) -> Iterator[TestClient]:
    env = {"KUBECONFIG": emulator.kubeconfig, "MUTATE_DEADLINE": f"{DEADLINE_S:g}s"}
    with function_client("mutate", **env) as client:
        yield client


def timed_admit(client: TestClient, pod: dict[str, Any]) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    http = client.post("/mutate", json=pod_review(pod))
    return response_of(http), time.monotonic() - started


def not_reserved(reason: str) -> list[str]:
    return [
        f"cocoon-webhook: VM name not reserved ({reason}); pod admitted without sticky placement"
    ]


@pytest.mark.parametrize(
    ("method", "path", "fault", "reason"),
    [
        pytest.param("GET", CM_PATH, {"status": 500}, "kubernetes API error 500", id="get-500"),
        pytest.param("GET", "/api/v1/nodes", {"status": 503}, "kubernetes API error 503",
                     id="nodes-503"),
        pytest.param("POST", "/api/v1/namespaces/cocoon-system/configmaps", {"status": 500},
                     "kubernetes API error 500", id="create-500"),
        pytest.param("POST", "/api/v1/namespaces/cocoon-system/configmaps", {"status": 403},
                     "kubernetes API error 403", id="create-forbidden"),
        pytest.param("GET", CM_PATH, {"drop": True}, "kubernetes API unreachable", id="get-drop"),
        pytest.param("GET", CM_PATH, {"delay": 3.0}, "deadline exceeded", id="get-slow"),
        pytest.param("GET", "/api/v1/namespaces/ns/pods", {"delay": 3.0}, "deadline exceeded",
                     id="pods-slow"),
    ],
)  # fmt: skip
def test_dependency_failures_fail_open_in_time(
    mutate: TestClient,
    core: Any,
    emulator: Any,
    method: str,
    path: str,
    fault: dict[str, Any],
    reason: str,
) -> None:
    emulator.fault(method, path, times=3, **fault)
    before = admission_count("mutate", "affinity_failed")
    response, elapsed = timed_admit(mutate, cocoon_pod(rs="demo-7b7c9d9d5f"))
    assert response == {
        "uid": "uid-1",
        "allowed": True,
        "warnings": not_reserved(reason),
        # The audit log records why the pod runs without a VM name.
        "auditAnnotations": {"reason": reason, "pool": "default"},
    }
    assert elapsed < DEADLINE_S + 0.5
    assert admission_count("mutate", "affinity_failed") == before + 1
    emulator.clear_faults()
    assert affinity_data(core) == {}  # a failed admission leaves nothing behind


def test_a_burst_of_conflicts_is_retried_to_one_entry(
    mutate: TestClient, core: Any, emulator: Any
) -> None:
    response, _ = timed_admit(mutate, cocoon_pod(name="alone"))  # the ConfigMap exists now
    emulator.fault("PUT", CM_PATH, status=409, times=4)
    response, elapsed = timed_admit(mutate, cocoon_pod(name="second"))
    assert "warnings" not in response
    assert elapsed < DEADLINE_S
    assert any(op["path"] == "/spec/nodeName" for op in patch_of(response))
    assert sorted(affinity_data(core)) == ["ns._pod.alone", "ns._pod.second"]
    puts = [r for r in emulator.requests() if r["method"] == "PUT"]
    assert [r["status"] for r in puts] == [409, 409, 409, 409, 200]


def test_endless_conflicts_end_at_the_deadline(
    mutate: TestClient, core: Any, emulator: Any
) -> None:
    timed_admit(mutate, cocoon_pod(name="alone"))
    emulator.fault("PUT", CM_PATH, status=409, times=1000)
    response, elapsed = timed_admit(mutate, cocoon_pod(name="second"))
    assert response["warnings"][0].startswith("cocoon-webhook: VM name not reserved (")
    assert elapsed < DEADLINE_S + 0.5
    emulator.clear_faults()
    assert sorted(affinity_data(core)) == ["ns._pod.alone"]  # nothing partial


def test_a_slow_write_landing_late_leaves_no_duplicate(
    mutate: TestClient, core: Any, emulator: Any
) -> None:
    timed_admit(mutate, cocoon_pod(name="alone"))
    emulator.fault("PUT", CM_PATH, delay=DEADLINE_S + 0.3, times=1)
    response, elapsed = timed_admit(mutate, cocoon_pod(name="late"))
    assert response["warnings"] == not_reserved("deadline exceeded")
    assert elapsed < DEADLINE_S + 0.5
    time.sleep(0.5)  # let the late write land
    # Re-admitting the same pod finds its own claim: the same entry, not a second one.
    response, _ = timed_admit(mutate, cocoon_pod(name="late"))
    assert "warnings" not in response
    data = affinity_data(core)
    assert sorted(data) == ["ns._pod.alone", "ns._pod.late"]
    assert json.loads(data["ns._pod.late"])["pod"] == "late"
