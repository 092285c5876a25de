"""mutate through functions-framework against the emulator (SPEC 5): the API server's part is
played here: each answer's patch is applied and the pod stored, as a real API server would."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from starlette.testclient import TestClient

from tests.cluster import (
    AFFINITY,
    add_node,
    add_running_pod,
    affinity_data,
    apply_patch,
    cocoon_pod,
    pod_review,
)
from tests.functions_app import api_requests, function_client, wait_ready
from tests.helpers import admission_count, patch_of, response_of

RS = "demo-7b7c9d9d5f"


@pytest.fixture
def core(emulator: Any) -> Any:
    api = kubernetes.client.CoreV1Api(emulator.api_client())
    api.create_namespace({"metadata": {"name": "ns"}})
    add_node(api, "cocoon-a")
    add_node(api, "cocoon-b")
    add_node(api, "gpu-1", pool="gpu")
    add_node(api, "worker-1", pool=None)
    add_running_pod(api, "busy-1", "cocoon-a")
    add_running_pod(api, "busy-2", "cocoon-a")
    emulator.clear_requests()
    return api


@pytest.fixture
def mutate(emulator: Any, core: Any) -> Iterator[TestClient]:
    with function_client("mutate", KUBECONFIG=emulator.kubeconfig) as client:
        wait_ready(client)
        yield client


def admit(client: TestClient, core: Any, pod: dict[str, Any], *, store: bool = True) -> dict:
    """POST the review; store the patched pod like the API server; return the response."""
    response = response_of(client.post("/mutate", json=pod_review(pod)))
    assert response["allowed"] is True
    if store:
        core.create_namespaced_pod(pod["metadata"]["namespace"], apply_patch(pod, response))
    return response


def placement(core: Any, name: str) -> tuple[str, str]:
    pod = core.read_namespaced_pod(name, "ns")
    return pod.metadata.annotations["vm.cocoonstack.io/name"], pod.spec.node_name


def names_of(core: Any) -> list[str]:
    return sorted(p.metadata.name for p in core.list_namespaced_pod("ns").items)


def test_three_replicas_get_dense_slots_on_least_used_nodes(mutate: TestClient, core: Any) -> None:
    for _ in range(3):
        admit(mutate, core, cocoon_pod(rs=RS))
    placed = sorted(placement(core, name) for name in names_of(core))
    assert placed == [
        ("vk-ns-demo-0", "cocoon-b"),
        ("vk-ns-demo-1", "cocoon-b"),
        ("vk-ns-demo-2", "cocoon-a"),
    ]
    assert sorted(affinity_data(core)) == ["ns.demo.0", "ns.demo.1", "ns.demo.2"]
    assert all(name.startswith(f"{RS}-") and len(name) == len(RS) + 6 for name in names_of(core))


def test_placements_are_recorded_for_the_audit_log(mutate: TestClient, core: Any) -> None:
    first = admit(mutate, core, cocoon_pod(rs=RS))
    assert first["auditAnnotations"] == {
        "vm-name": "vk-ns-demo-0",
        "pool": "default",
        "key": "ns.demo.0",
        "slot": "0",
        "node": "cocoon-b",
    }
    bare = admit(mutate, core, cocoon_pod(name="solo", pool="gpu"))
    assert bare["auditAnnotations"] == {
        "vm-name": "vk-ns-solo",
        "pool": "gpu",
        "key": "ns._pod.solo",
        "slot": "0",
        "node": "gpu-1",
    }
    invalid = admit(mutate, core, cocoon_pod(name="odd", pool="not a pool"), store=False)
    assert invalid["auditAnnotations"] == {"reason": "invalid pool 'not a pool'"}


def test_replacement_takes_the_freed_slot_and_its_node(mutate: TestClient, core: Any) -> None:
    for _ in range(3):
        admit(mutate, core, cocoon_pod(rs=RS))
    by_vm = {placement(core, n)[0]: n for n in names_of(core)}
    gone = by_vm["vk-ns-demo-1"]
    node_before = placement(core, gone)[1]
    core.delete_namespaced_pod(gone, "ns", grace_period_seconds=0)
    # Age the claims past the in-flight window so only liveness protects a slot.
    data = affinity_data(core)
    for key, value in data.items():
        entry = json.loads(value)
        entry["updatedAt"] = "2026-01-01T00:00:00Z"
        data[key] = json.dumps(entry, separators=(",", ":"))
    core.patch_namespaced_config_map("cocoon-affinity-default", "cocoon-system", {"data": data})

    response = admit(mutate, core, cocoon_pod(rs=RS))
    new = next(op["value"] for op in patch_of(response) if op["path"] == "/metadata/name")
    assert placement(core, new) == ("vk-ns-demo-1", node_before)
    assert json.loads(affinity_data(core)["ns.demo.1"])["pod"] == new


def test_bare_pods_keep_separate_records(mutate: TestClient, core: Any) -> None:
    admit(mutate, core, cocoon_pod(name="alone"))
    admit(mutate, core, cocoon_pod(name="other"))
    data = affinity_data(core)
    assert sorted(data) == ["ns._pod.alone", "ns._pod.other"]
    assert placement(core, "alone")[0] == "vk-ns-alone"
    assert placement(core, "other")[0] == "vk-ns-other"
    assert json.loads(data["ns._pod.alone"])["pod"] == "alone"


def test_pool_from_label_uses_its_own_configmap(mutate: TestClient, core: Any) -> None:
    admit(mutate, core, cocoon_pod(name="trainer", pool="gpu"))
    assert placement(core, "trainer") == ("vk-ns-trainer", "gpu-1")
    assert list(affinity_data(core, "cocoon-affinity-gpu")) == ["ns._pod.trainer"]


def test_dry_run_answers_the_same_and_writes_nothing(
    mutate: TestClient, core: Any, emulator: Any
) -> None:
    pod = cocoon_pod(name="alone")
    dry = response_of(mutate.post("/mutate", json=pod_review(pod, dry_run=True)))
    writes = [r for r in emulator.requests() if r["method"] in ("POST", "PUT", "PATCH")]
    assert writes == []
    assert affinity_data(core) == {}
    real = response_of(mutate.post("/mutate", json=pod_review(pod)))
    assert patch_of(dry) == patch_of(real)


def test_go_written_values_survive_a_round_trip(mutate: TestClient, core: Any) -> None:
    go_values = {
        "ns.legacy.0": '{"pool":"default","namespace":"ns","deployment":"legacy","slot":0,'
        '"vmName":"vk-ns-legacy-0","pod":"legacy-6d4b7c9f8-\\u003cunnamed\\u003e",'
        '"node":"cocoon-a","updatedAt":"2026-11-20T08:15:30.123456789Z"}',
        "ns.legacy.1": '{"pool":"default","namespace":"ns","deployment":"legacy","slot":1,'
        '"vmName":"vk-ns-legacy-1","pod":"x","node":"cocoon-b","updatedAt":"2026-11-20T08:15:30Z"}',
    }
    core.create_namespaced_config_map("cocoon-system", {
        "metadata": {"name": "cocoon-affinity-default", "labels": {
            "app.kubernetes.io/managed-by": "cocoon-webhook", "cocoonstack.io/pool": "default"}},
        "data": go_values,
    })  # fmt: skip
    admit(mutate, core, cocoon_pod(name="alone"))
    data = affinity_data(core)
    assert {k: data[k] for k in go_values} == go_values  # byte-identical
    assert set(data) == {*go_values, "ns._pod.alone"}


def test_legacy_shared_bare_row_moves_to_canonical_key(mutate: TestClient, core: Any) -> None:
    legacy = ('{"pool":"default","namespace":"ns","deployment":"","slot":0,"vmName":"vk-ns-web-0",'
              '"pod":"web-0","node":"cocoon-a","updatedAt":"2026-01-01T00:00:00Z"}')  # fmt: skip
    body = {"metadata": {"name": "cocoon-affinity-default"}, "data": {"ns._pod.0": legacy}}
    core.create_namespaced_config_map("cocoon-system", body)
    admit(mutate, core, cocoon_pod(name="web-0"))
    assert placement(core, "web-0") == ("vk-ns-web-0", "cocoon-a")  # sticky from the old row
    assert list(affinity_data(core)) == ["ns._pod.web-0"]


def test_api_budget_in_the_steady_state(mutate: TestClient, core: Any, emulator: Any) -> None:
    admit(mutate, core, cocoon_pod(rs=RS))
    name = names_of(core)[0]
    core.delete_namespaced_pod(name, "ns", grace_period_seconds=0)
    emulator.clear_requests()
    # Re-admission of the same pod name inside the window: no write needed at all.
    pod = cocoon_pod(rs=RS)
    pod["metadata"]["name"] = name
    admit(mutate, core, pod, store=False)
    # Everything is read from the caches, and the stored claim already says this: no request.
    assert api_requests(emulator) == []


def wait_cached(emulator: Any, core: Any, predicate: Any) -> None:
    """Until the process's caches show what the test just stored (they lag by milliseconds)."""
    from common import runtime

    deadline = time.monotonic() + 10
    while not predicate(runtime.process().caches):
        assert time.monotonic() < deadline, "the caches never caught up"
        time.sleep(0.01)


def test_one_request_per_admission_in_the_steady_state(
    mutate: TestClient, core: Any, emulator: Any
) -> None:
    """Issue 10: a takeover, a fresh pick and a bare pod each cost one request, the write."""
    admit(mutate, core, cocoon_pod(rs=RS))
    first = names_of(core)[0]
    core.delete_namespaced_pod(first, "ns", grace_period_seconds=0)
    # Age the claim so only liveness holds the slot: the steady state of a long-running pool.
    data = affinity_data(core)
    aged = {
        k: json.dumps({**json.loads(v), "updatedAt": "2020-01-01T00:00:00Z"})
        for k, v in data.items()
    }
    core.patch_namespaced_config_map(*AFFINITY[::-1], {"data": aged})
    wait_cached(emulator, core, lambda c: not c.pods.in_namespace("ns")
                and c.configmaps.get(AFFINITY[1]).data == aged)  # fmt: skip
    cases = {
        "takeover": cocoon_pod(rs=RS),
        "fresh pick": cocoon_pod(rs="other-6f5d8b9c7d"),
        "bare pod": cocoon_pod(name="alone"),
    }
    for case, pod in cases.items():
        emulator.clear_requests()
        admit(mutate, core, pod, store=False)
        assert api_requests(emulator) == [
            ("PUT", "/api/v1/namespaces/cocoon-system/configmaps/cocoon-affinity-default")
        ], case


def test_skips_cost_no_api_calls(mutate: TestClient, core: Any, emulator: Any) -> None:
    emulator.clear_requests()  # the caches' first LISTs
    plain = cocoon_pod(name="plain")
    plain["spec"]["tolerations"] = []
    pinned = cocoon_pod(name="pinned")
    pinned["spec"]["nodeName"] = "cocoon-a"
    owned = cocoon_pod(name="owned")
    owned["metadata"]["ownerReferences"] = [{"kind": "CocoonSet", "name": "s", "uid": "u"}]
    bad_pool = cocoon_pod(name="gpu", pool="GPU_Pool")
    for pod in (plain, pinned, owned):
        assert response_of(mutate.post("/mutate", json=pod_review(pod))) == {
            "uid": "uid-1", "allowed": True}  # fmt: skip
    before = admission_count("mutate", "affinity_failed")
    response = response_of(mutate.post("/mutate", json=pod_review(bad_pool)))
    assert response["warnings"] == [
        'cocoon-webhook: VM name not reserved (invalid pool "GPU_Pool")'
    ]
    assert admission_count("mutate", "affinity_failed") == before + 1
    assert api_requests(emulator) == []


def test_pod_whose_key_the_api_server_would_refuse_costs_no_call(
    mutate: TestClient, core: Any, emulator: Any
) -> None:
    """Its ConfigMap write would fail with 422, and with it every admission batched into it."""
    emulator.clear_requests()  # the caches' first LISTs
    before = admission_count("mutate", "affinity_failed")
    response = response_of(mutate.post("/mutate", json=pod_review(cocoon_pod(name="a b"))))
    assert response["warnings"] == [
        'cocoon-webhook: VM name not reserved (invalid entry key "ns._pod.a b")'
    ]
    assert "patch" not in response
    assert admission_count("mutate", "affinity_failed") == before + 1
    assert api_requests(emulator) == []
    admit(mutate, core, cocoon_pod(name="alone"))
    assert list(affinity_data(core)) == ["ns._pod.alone"]


def test_undecodable_pod_is_allowed_as_error(mutate: TestClient) -> None:
    before = admission_count("mutate", "error")
    body = pod_review(cocoon_pod(name="x"))
    body["request"]["object"]["spec"]["tolerations"] = "x"
    assert response_of(mutate.post("/mutate", json=body)) == {
        "uid": "uid-1",
        "allowed": True,
        "auditAnnotations": {
            "reason": "undecodable pod: object.spec.tolerations: want array, got string"
        },
    }
    assert admission_count("mutate", "error") == before + 1


def test_no_candidate_node_leaves_the_pod_to_the_scheduler(mutate: TestClient, core: Any) -> None:
    response = admit(mutate, core, cocoon_pod(name="lonely-1", pool="lonely"))
    assert response["warnings"] == [
        'cocoon-webhook: no schedulable node in pool "lonely"; pod left to the scheduler'
    ]
    assert [op["path"] for op in patch_of(response)] == [
        "/metadata/annotations",
        "/metadata/annotations/vm.cocoonstack.io~1name",
    ]
    assert (
        json.loads(affinity_data(core, "cocoon-affinity-lonely")["ns._pod.lonely-1"])["node"] == ""
    )


def test_silent_caches_fall_back_to_direct_reads(emulator: Any, core: Any) -> None:
    """A cache that has heard nothing past CACHE_MAX_SILENCE is not trusted: the admission
    reads the API directly, counts a fallback and still reserves."""
    from prometheus_client import REGISTRY

    def fallbacks() -> float:
        return REGISTRY.get_sample_value("cocoon_webhook_cache_fallbacks_total") or 0.0

    env = {"KUBECONFIG": emulator.kubeconfig, "CACHE_MAX_SILENCE": "1s"}
    with function_client("mutate", **env) as client:
        wait_ready(client)
        from common import runtime

        # Every nodes watch from now on holds its events (bookmarks too) back for a minute.
        emulator.fault("GET", "/api/v1/nodes", watch="delay", delay=60, times=100)
        deadline = time.monotonic() + 20
        while runtime.process().caches.stale() != ["nodes"]:
            assert time.monotonic() < deadline, "the nodes cache never went silent"
            time.sleep(0.05)
        before = fallbacks()
        emulator.clear_requests()
        admit(client, core, cocoon_pod(name="alone"))
        assert ("GET", "/api/v1/nodes") in api_requests(emulator)
        assert fallbacks() == before + 1
        assert placement(core, "alone") == ("vk-ns-alone", "cocoon-b")
        emulator.clear_faults()
