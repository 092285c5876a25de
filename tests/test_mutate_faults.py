"""mutate under API faults (emulator fault injection): always an answer within the deadline,
never a 5xx, never a partial or duplicate reservation (SPEC 5.10, 5.11). A transient failure
(no answer, 429, 5xx) is retried, on reads and on the write alike; other answers are final."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from starlette.testclient import TestClient

from common.affinity import MAX_ATTEMPTS
from tests.cluster import add_node, affinity_data, cocoon_pod, pod_review
from tests.functions_app import function_client
from tests.helpers import admission_count, metric, patch_of, response_of, wait_until

CM_PATH = "/api/v1/namespaces/cocoon-system/configmaps/cocoon-affinity-default"
CM_CREATE = "/api/v1/namespaces/cocoon-system/configmaps"
DEADLINE_S = 1.0
# "In time" leaves a loaded machine three seconds past the deadline; an API call held longer than
# that (SLOW_S) shows whether the admission waited for it.
IN_TIME_S = DEADLINE_S + 3
SLOW_S = IN_TIME_S + 2
PATIENT_DEADLINE_S = 3.0  # production's default: room for a Retry-After of 1 s, or a timeout
RS = "demo-7b7c9d9d5f"


@pytest.fixture
def core(emulator: Any) -> Any:
    api = kubernetes.client.CoreV1Api(emulator.api_client())
    api.create_namespace({"metadata": {"name": "ns"}})
    add_node(api, "cocoon-a")
    add_node(api, "cocoon-b")
    return api


# These faults hit mutate's direct reads: with its caches off (CACHE_MAX_SILENCE=0), as when they
# are silent, every admission reads the API. tests/test_mutate_cache_races.py has the caches'.
DIRECT = {"CACHE_MAX_SILENCE": "0s"}


@pytest.fixture
def mutate(emulator: Any, core: Any) -> Iterator[TestClient]:
    env = {"KUBECONFIG": emulator.kubeconfig, "MUTATE_DEADLINE": f"{DEADLINE_S:g}s", **DIRECT}
    with function_client("mutate", **env) as client:
        yield client


@pytest.fixture
def patient(emulator: Any, core: Any) -> Iterator[TestClient]:
    env = {"KUBECONFIG": emulator.kubeconfig, "MUTATE_DEADLINE": f"{PATIENT_DEADLINE_S:g}s",
           **DIRECT}  # fmt: skip
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


def settled_requests(emulator: Any, method: str, path: str, count: int) -> list[int]:
    """Statuses of `method path` requests once `count` are logged: the log is in completion
    order, and an attempt we gave up on completes on the emulator's side only later."""
    deadline = time.monotonic() + 10
    while True:
        statuses = [r["status"] for r in emulator.requests()
                    if (r["method"], r["path"]) == (method, path)]  # fmt: skip
        if len(statuses) >= count or time.monotonic() > deadline:
            return statuses
        time.sleep(0.05)


def entry_owners(core: Any) -> dict[str, str]:
    return {key: json.loads(value)["pod"] for key, value in affinity_data(core).items()}


def pod_name(response: dict[str, Any]) -> str:
    return next(op["value"] for op in patch_of(response) if op["path"] == "/metadata/name")


# What a transient failure can look like: 5xx, 429 with and without Retry-After, no answer at
# all (the connection dropped), an answer too slow for the attempt's timeout.
TRANSIENT = {
    "500": {"status": 500},
    "503": {"status": 503},
    "429": {"status": 429},
    "429-retry-after": {"status": 429, "retry_after": 1},
    "dropped": {"drop": True},
    "slow": {"delay": 2.5},
}
READS = {"configmap": ("GET", CM_PATH), "nodes": ("GET", "/api/v1/nodes"),
         "pods": ("GET", "/api/v1/namespaces/ns/pods")}  # fmt: skip


@pytest.mark.parametrize("fault", list(TRANSIENT))
@pytest.mark.parametrize("read", list(READS))
def test_a_transient_read_failure_is_retried(
    patient: TestClient, core: Any, emulator: Any, read: str, fault: str
) -> None:
    method, path = READS[read]
    emulator.fault(method, path, **TRANSIENT[fault])
    started = time.monotonic()
    response, _ = timed_admit(patient, cocoon_pod(rs=RS))
    assert "warnings" not in response, response["warnings"]
    assert len(settled_requests(emulator, method, path, 2)) == 2  # the failure and its retry
    assert entry_owners(core) == {"ns.demo.0": pod_name(response)}
    if fault == "429-retry-after":
        assert time.monotonic() - started >= 1.0  # the server asked for a second; it got it


@pytest.mark.parametrize("fault", [*TRANSIENT, "answer-lost"])
@pytest.mark.parametrize("write", ["create", "update"])
def test_a_transient_write_failure_is_retried_to_one_entry(
    patient: TestClient, core: Any, emulator: Any, write: str, fault: str
) -> None:
    if write == "update":
        timed_admit(patient, cocoon_pod(name="alone"))  # the ConfigMap exists now
    method, path = ("POST", CM_CREATE) if write == "create" else ("PUT", CM_PATH)
    emulator.clear_requests()
    emulator.fault(method, path, **({"lose_answer": True} if fault == "answer-lost"
                                    else TRANSIENT[fault]))  # fmt: skip
    response, _ = timed_admit(patient, cocoon_pod(rs=RS))
    assert "warnings" not in response, response["warnings"]
    statuses = settled_requests(emulator, method, path, 2)
    mine = pod_name(response)
    expected = {"ns.demo.0": mine} | ({"ns._pod.alone": "alone"} if write == "update" else {})
    assert entry_owners(core) == expected  # stored once, in one slot, nothing overwritten
    if fault == "answer-lost":
        # The first write landed; its retry was refused (409), and the re-read found the entry
        # already there, so nothing more was written.
        assert statuses == [201 if write == "create" else 200, 409]
    elif fault == "slow":
        # The retry landed first; the slow original arrived with a stale resourceVersion.
        assert sorted(statuses) == sorted([201 if write == "create" else 200, 409])
    else:
        assert statuses[-1] in (200, 201) and len(statuses) == 2


@pytest.mark.parametrize("status", [400, 403, 422])
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", CM_PATH), ("GET", "/api/v1/nodes"), ("POST", CM_CREATE)],
)
def test_final_answers_are_not_retried(
    patient: TestClient, core: Any, emulator: Any, method: str, path: str, status: int
) -> None:
    emulator.fault(method, path, status=status, times=2)
    response, _ = timed_admit(patient, cocoon_pod(rs=RS))
    assert response["warnings"] == not_reserved(f"kubernetes API error {status}")
    assert settled_requests(emulator, method, path, 1) == [status]
    emulator.clear_faults()
    assert affinity_data(core) == {}


@pytest.mark.parametrize(
    ("method", "path", "fault", "reasons"),
    [
        pytest.param("GET", CM_PATH, {"status": 500}, {"kubernetes API error 500"}, id="get-500"),
        pytest.param("GET", "/api/v1/nodes", {"status": 503}, {"kubernetes API error 503"},
                     id="nodes-503"),
        pytest.param("POST", CM_CREATE, {"status": 500}, {"kubernetes API error 500"},
                     id="create-500"),
        pytest.param("PUT", CM_PATH, {"status": 429}, {"kubernetes API error 429"},
                     id="update-429"),
        pytest.param("GET", CM_PATH, {"drop": True}, {"kubernetes API unreachable"},
                     id="get-drop"),
        pytest.param("GET", CM_PATH, {"delay": SLOW_S}, set(), id="get-slow"),
        pytest.param("GET", "/api/v1/namespaces/ns/pods", {"delay": SLOW_S}, set(),
                     id="pods-slow"),
    ],
)  # fmt: skip
def test_lasting_failures_fail_open_in_time(
    mutate: TestClient,
    core: Any,
    emulator: Any,
    method: str,
    path: str,
    fault: dict[str, Any],
    reasons: set[str],
) -> None:
    if method == "PUT":
        timed_admit(mutate, cocoon_pod(name="alone"))
    before_entries = affinity_data(core)
    emulator.fault(method, path, times=1000, **fault)
    before = admission_count("mutate", "affinity_failed")
    response, elapsed = timed_admit(mutate, cocoon_pod(rs=RS))
    # The last failure is the reason, unless the deadline came first (a loaded machine).
    reason = response["auditAnnotations"]["reason"]
    assert reason in reasons | {"deadline exceeded"}
    assert response == {
        "uid": "uid-1",
        "allowed": True,
        "warnings": not_reserved(reason),
        # The audit log records why the pod runs without a VM name.
        "auditAnnotations": {"reason": reason, "pool": "default"},
    }
    assert elapsed < IN_TIME_S
    assert admission_count("mutate", "affinity_failed") == before + 1
    emulator.clear_faults()
    if not fault.get("delay"):  # retried while time was left
        assert len(settled_requests(emulator, method, path, 2)) >= 2
    assert affinity_data(core) == before_entries  # a failed admission leaves nothing behind


def test_a_burst_of_conflicts_is_retried_to_one_entry(
    mutate: TestClient, core: Any, emulator: Any
) -> None:
    response, _ = timed_admit(mutate, cocoon_pod(name="alone"))  # the ConfigMap exists now
    emulator.fault("PUT", CM_PATH, status=409, times=4)
    response, _ = timed_admit(mutate, cocoon_pod(name="second"))
    assert "warnings" not in response  # within the deadline, or it would have failed open
    assert any(op["path"] == "/spec/nodeName" for op in patch_of(response))
    assert sorted(affinity_data(core)) == ["ns._pod.alone", "ns._pod.second"]
    puts = [r for r in emulator.requests() if r["method"] == "PUT"]
    assert [r["status"] for r in puts] == [409, 409, 409, 409, 200]


def test_endless_conflicts_end_at_the_conflict_limit(
    patient: TestClient, core: Any, emulator: Any
) -> None:
    """Lost writes are retried MAX_ATTEMPTS (16) times, then the pod fails open saying why."""
    timed_admit(patient, cocoon_pod(name="alone"))
    emulator.fault("PUT", CM_PATH, status=409, times=1000)
    emulator.clear_requests()
    conflicts = metric("cocoon_webhook_affinity_conflicts_total", pool="default")
    response, _ = timed_admit(patient, cocoon_pod(name="second"))
    assert response["warnings"] == not_reserved("conflicts")
    assert response["auditAnnotations"] == {"reason": "conflicts", "pool": "default"}
    assert settled_requests(emulator, "PUT", CM_PATH, MAX_ATTEMPTS) == [409] * MAX_ATTEMPTS
    assert metric("cocoon_webhook_affinity_conflicts_total", pool="default") == (
        conflicts + MAX_ATTEMPTS
    )
    emulator.clear_faults()
    assert sorted(affinity_data(core)) == ["ns._pod.alone"]  # nothing partial


def test_endless_slow_conflicts_end_at_the_deadline(
    mutate: TestClient, core: Any, emulator: Any
) -> None:
    timed_admit(mutate, cocoon_pod(name="alone"))
    # Sixteen lost writes would take 3.2 s: the 1 s deadline ends them first.
    emulator.fault("PUT", CM_PATH, status=409, delay=0.2, times=1000)
    response, elapsed = timed_admit(mutate, cocoon_pod(name="second"))
    assert response["warnings"] == not_reserved("deadline exceeded")
    assert elapsed < IN_TIME_S
    emulator.clear_faults()
    assert sorted(affinity_data(core)) == ["ns._pod.alone"]  # nothing partial


def test_a_configmap_deleted_between_read_and_write_is_created_again(
    patient: TestClient, core: Any, emulator: Any
) -> None:
    timed_admit(patient, cocoon_pod(name="alone"))
    emulator.fault("PUT", CM_PATH, delay=1.0, times=1)
    emulator.clear_requests()
    replies: list[dict[str, Any]] = []
    admitting = threading.Thread(
        target=lambda: replies.append(timed_admit(patient, cocoon_pod(name="second"))[0])
    )
    admitting.start()
    # The PUT has started (its fault is used up) and waits: delete the ConfigMap under it.
    assert wait_until(lambda: not emulator.pending_faults())
    core.delete_namespaced_config_map("cocoon-affinity-default", "cocoon-system")
    admitting.join(20)
    [response] = replies
    assert "warnings" not in response, response
    # The PUT found nothing to update (404; or, had a loaded machine timed it out first, 409 on
    # the ConfigMap made again meanwhile): the one write that stored anything is a create.
    [put] = settled_requests(emulator, "PUT", CM_PATH, 1)
    assert put in (404, 409)
    created = settled_requests(emulator, "POST", CM_CREATE, 1)
    assert created[-1] == 201
    # Created again with this pod's entry only: the deleted one took "alone" with it.
    assert sorted(affinity_data(core)) == ["ns._pod.second"]


def test_a_slow_write_landing_late_leaves_no_duplicate(
    mutate: TestClient, core: Any, emulator: Any
) -> None:
    timed_admit(mutate, cocoon_pod(name="alone"))
    emulator.fault("PUT", CM_PATH, delay=SLOW_S, times=2)  # the write and its retry
    response, elapsed = timed_admit(mutate, cocoon_pod(name="late"))
    assert response["warnings"] == not_reserved("deadline exceeded")
    assert elapsed < IN_TIME_S
    # Both land late: the first one stores the entry, its retry finds the version moved on.
    assert settled_requests(emulator, "PUT", CM_PATH, 2) == [200, 409]
    # Re-admitting the same pod finds its own claim: the same entry, not a second one.
    response, _ = timed_admit(mutate, cocoon_pod(name="late"))
    assert "warnings" not in response
    assert settled_requests(emulator, "PUT", CM_PATH, 3) == [200, 409]
    data = affinity_data(core)
    assert sorted(data) == ["ns._pod.alone", "ns._pod.late"]
    assert json.loads(data["ns._pod.late"])["pod"] == "late"
