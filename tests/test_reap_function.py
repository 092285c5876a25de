"""reap through functions-framework against the emulator (SPEC 8): the sweep's lifecycle, the
re-claim race, the request budget, the CloudEvent surface, and the CronJob's tick."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes
import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from common.reap_event import EVENT_SOURCE, EVENT_TYPE
from common.reaper import TRANSIENT_RETRIES
from common.reservation import Reservation, decode, encode
from tests.cluster import AFFINITY, add_node, affinity_data, apply_patch, cocoon_pod, pod_review
from tests.functions_app import ROOT, function_client
from tests.helpers import response_of

RS = "demo-7b7c9d9d5f"
CM_PATH = f"/api/v1/namespaces/{AFFINITY[0]}/configmaps/{AFFINITY[1]}"
CM_LIST_PATH = f"/api/v1/namespaces/{AFFINITY[0]}/configmaps"
GRACE_S = 2.0
WINDOW_S = 1.0
CLOUDEVENT = {
    "ce-specversion": "1.0",
    "ce-id": "cocoon-reaper-29000000-x1",
    "ce-source": EVENT_SOURCE,
    "ce-type": EVENT_TYPE,
}


@pytest.fixture
def core(emulator: Any) -> Any:
    api = kubernetes.client.CoreV1Api(emulator.api_client())
    api.create_namespace({"metadata": {"name": "ns"}})
    add_node(api, "cocoon-a")
    emulator.clear_requests()
    return api


@pytest.fixture
def reap(emulator: Any, core: Any) -> Iterator[TestClient]:
    with function_client(
        "reap",
        KUBECONFIG=emulator.kubeconfig,
        REAPER_GRACE=f"{GRACE_S:g}s",
        AFFINITY_INFLIGHT_WINDOW=f"{WINDOW_S:g}s",
    ) as client:
        yield client


@pytest.fixture
def mutate(emulator: Any, reap: TestClient) -> Iterator[TestClient]:
    # Loaded after reap: both modules keep the settings and client they were loaded with.
    with function_client("mutate", KUBECONFIG=emulator.kubeconfig) as client:
        yield client


def tick(client: TestClient, data: bytes = b"{}", status: int = 200) -> dict[str, Any]:
    reply = client.post(
        "/", content=data, headers={**CLOUDEVENT, "content-type": "application/json"}
    )
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    summary: dict[str, Any] = reply.json()
    return summary


def summary_of(**fields: Any) -> dict[str, Any]:
    base = {"pools": 1, "checked": 0, "marked": 0, "cleared": 0, "released": 0, "malformed": 0,
            "errors": 0, "retries": 0, "dryRun": False}  # fmt: skip
    return {**base, **fields}


def admit(mutate: TestClient, core: Any) -> str:
    """One Deployment pod through mutate, stored as the API server would; its name."""
    pod = cocoon_pod(rs=RS)
    response = response_of(mutate.post("/mutate", json=pod_review(pod)))
    assert "patch" in response, response
    stored = apply_patch(pod, response)
    core.create_namespaced_pod("ns", stored)
    name: str = stored["metadata"]["name"]
    return name


def delete_pod(core: Any, name: str) -> None:
    core.delete_namespaced_pod(name, "ns", grace_period_seconds=0)


def entries(core: Any) -> dict[str, Reservation]:
    return {key: decode(value) for key, value in affinity_data(core).items()}


def releases() -> float:
    sample = REGISTRY.get_sample_value(
        "cocoon_webhook_affinity_releases_total", {"pool": "default"}
    )
    return sample or 0.0


def calls(emulator: Any) -> list[tuple[str, str, int]]:
    return [(r["method"], r["path"], r["status"]) for r in emulator.requests()]


def test_deleted_pod_is_marked_then_released_and_a_returning_pod_kept(
    emulator: Any, core: Any, reap: TestClient, mutate: TestClient
) -> None:
    names = [admit(mutate, core) for _ in range(3)]
    assert {e.pod: e.slot for e in entries(core).values()} == dict(
        zip(names, range(3), strict=True)
    )
    time.sleep(WINDOW_S + 0.1)  # let the claims leave the in-flight window

    delete_pod(core, names[0])
    delete_pod(core, names[1])
    first = tick(reap)
    assert first == summary_of(checked=3, marked=2)
    marked = entries(core)
    assert marked["ns.demo.0"].missing_since is not None
    assert marked["ns.demo.1"].missing_since is not None
    assert marked["ns.demo.2"].missing_since is None

    # Slot 1's pod comes back (same name, as a recreated StatefulSet-style pod would).
    core.create_namespaced_pod("ns", {
        "metadata": {"name": names[1], "annotations": {"vm.cocoonstack.io/name": "vk-ns-demo-1"}},
        "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
    })  # fmt: skip
    second = tick(reap)
    assert second == summary_of(checked=3, cleared=1)
    assert entries(core)["ns.demo.1"].missing_since is None

    before = releases()
    time.sleep(GRACE_S + 0.1)
    emulator.clear_requests()
    third = tick(reap)
    assert calls(emulator) == [
        ("GET", CM_LIST_PATH, 200),
        ("GET", "/api/v1/namespaces/ns/pods", 200),
        ("PUT", CM_PATH, 200),
    ]
    assert third == summary_of(checked=3, released=1)
    assert set(entries(core)) == {"ns.demo.1", "ns.demo.2"}
    assert releases() == before + 1
    assert tick(reap) == summary_of(checked=2)  # idempotent: nothing left to do


def write_entries(
    core: Any, data: dict[str, str], name: str = AFFINITY[1], pool: str = "default"
) -> None:
    body = {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "cocoon-webhook",
                                              "cocoonstack.io/pool": pool}},
        "data": data,
    }  # fmt: skip
    try:
        core.delete_namespaced_config_map(name, AFFINITY[0])
    except kubernetes.client.ApiException as exc:
        assert exc.status == 404
    core.create_namespaced_config_map(AFFINITY[0], body)


def stale(
    pod: str, slot: int, now: datetime, *, namespace: str = "ns", pool: str = "default"
) -> str:
    """An entry claimed an hour ago whose pod was found missing an hour ago."""
    return encode(Reservation(
        pool=pool, namespace=namespace, deployment="demo", slot=slot,
        vm_name=f"vk-{namespace}-demo-{slot}", pod=pod, node="cocoon-a",
        updated_at=now - timedelta(hours=1), missing_since=now - timedelta(hours=1),
    ))  # fmt: skip


def pending_faults(emulator: Any) -> list[Any]:
    with urllib.request.urlopen(f"{emulator.url}/_emulator/faults", timeout=5) as reply:
        result: list[Any] = json.loads(reply.read())
        return result


def test_entry_reclaimed_between_read_and_write_is_kept(
    emulator: Any, core: Any, reap: TestClient, mutate: TestClient
) -> None:
    now = datetime.now(UTC)
    write_entries(core, {
        "ns.demo.0": stale(f"{RS}-old00", 0, now),
        "ns.demo.1": stale(f"{RS}-old01", 1, now),
    })  # fmt: skip
    emulator.fault("PUT", CM_PATH, delay=1.5)
    emulator.clear_requests()
    result: dict[str, Any] = {}
    sweeper = threading.Thread(target=lambda: result.update(tick(reap)))
    sweeper.start()
    deadline = time.monotonic() + 10
    while pending_faults(emulator):  # the reaper's PUT is now held by the emulator
        assert time.monotonic() < deadline, "the reaper never wrote"
        time.sleep(0.02)

    # Meanwhile a new pod of the Deployment takes over slot 0, the lowest free one.
    new_pod = admit(mutate, core)
    sweeper.join(30)
    cm_calls = [c for c in calls(emulator) if c[1] == CM_PATH]

    assert result == summary_of(checked=2, released=1)
    after = entries(core)
    assert set(after) == {"ns.demo.0"}
    assert after["ns.demo.0"].pod == new_pod
    assert after["ns.demo.0"].missing_since is None
    # mutate's GET and PUT land while the reaper's PUT is held; the reaper loses, re-reads,
    # re-judges with the same `now`, and removes only the entry nobody re-claimed.
    assert cm_calls == [("GET", CM_PATH, 200), ("PUT", CM_PATH, 200), ("PUT", CM_PATH, 409),
                        ("GET", CM_PATH, 200), ("PUT", CM_PATH, 200)]  # fmt: skip


def test_request_count_does_not_grow_with_entries(emulator: Any, core: Any) -> None:
    namespaces = [f"team-{i}" for i in range(4)]
    pools = [f"pool-{i}" for i in range(5)]
    for ns in namespaces:
        core.create_namespace({"metadata": {"name": ns}})
        for i in range(5):
            core.create_namespaced_pod(ns, {
                "metadata": {"name": f"p-{i}"},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
            })  # fmt: skip
    # A wide window: with 1 s, half of it could pass while 10k entries are judged and written,
    # and the re-lists that triggers (correct, and still O(pools × namespaces)) would make the
    # count depend on the machine's speed.
    env = {"KUBECONFIG": emulator.kubeconfig, "REAPER_GRACE": "1h",
           "AFFINITY_INFLIGHT_WINDOW": "30s"}  # fmt: skip
    counts: dict[int, list[tuple[str, str, int]]] = {}
    now = datetime.now(UTC)
    with function_client("reap", **env) as client:
        for per_pool in (40, 2000):
            for pool in pools:
                data = {}
                for i in range(per_pool):
                    ns = namespaces[i % len(namespaces)]
                    value = stale(f"p-{i // len(namespaces)}", i, now, namespace=ns, pool=pool)
                    # Not marked yet: every pool gets a write (marks), so PUTs are counted too.
                    data[f"{ns}.demo.{i}"] = value.replace(',"missingSince":', ',"x":')
                write_entries(core, data, name=f"cocoon-affinity-{pool}", pool=pool)
            emulator.clear_requests()
            summary = tick(client)
            present = 5 * len(namespaces)
            assert summary == summary_of(pools=5, checked=5 * per_pool,
                                         marked=5 * (per_pool - present))  # fmt: skip
            counts[per_pool] = calls(emulator)
    assert len(counts[2000]) == 1 + len(namespaces) + len(pools)
    assert sorted(counts[2000]) == sorted(counts[40])
    assert all(status == 200 for _, _, status in counts[2000])


def test_probes_metrics_and_routing(reap: TestClient) -> None:
    assert (reap.get("/healthz").status_code, reap.get("/healthz").text) == (200, "ok")
    assert (reap.get("/readyz").status_code, reap.get("/readyz").text) == (200, "ready")
    tick(reap)
    metrics = reap.get("/metrics").text
    assert 'cocoon_webhook_reaper_sweeps_total{result="success"}' in metrics
    assert "cocoon_webhook_reaper_sweep_duration_seconds_count" in metrics
    assert reap.get("/").status_code == 405
    assert reap.post("/reap", content=b"{}", headers=CLOUDEVENT).status_code == 404


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        pytest.param({"content-type": "application/json"}, b"{}",
                     "no ce-* headers and content type is not application/cloudevents+json",
                     id="plain-post"),
        pytest.param({k: v for k, v in CLOUDEVENT.items() if k != "ce-source"}, b"{}",
                     "missing ce-source", id="binary-missing-source"),
        pytest.param({"content-type": "application/cloudevents+json"},
                     b'{"specversion":"1.0","source":"/x","type":"t"}', "missing id",
                     id="structured-missing-id"),
    ],
)  # fmt: skip
def test_not_a_cloudevent_is_400(
    emulator: Any, reap: TestClient, headers: dict[str, str], body: bytes, reason: str
) -> None:
    reply = reap.post("/", content=body, headers=headers)
    assert (reply.status_code, reply.text) == (400, f"not a CloudEvent: {reason}")
    assert emulator.requests() == []


def test_structured_mode_and_dry_run(core: Any, reap: TestClient) -> None:
    now = datetime.now(UTC)
    write_entries(core, {"ns.demo.0": stale("gone", 0, now)})
    event = {"specversion": "1.0", "id": "1", "source": "/test", "type": "anything",
             "datacontenttype": "application/json", "data": {"dryRun": True}}  # fmt: skip
    reply = reap.post("/", content=json.dumps(event),
                      headers={"content-type": "application/cloudevents+json"})  # fmt: skip
    assert reply.status_code == 200
    assert reply.json() == summary_of(checked=1, released=1, dryRun=True)
    assert set(affinity_data(core)) == {"ns.demo.0"}
    assert tick(reap, b'{"dryRun":false}') == summary_of(checked=1, released=1)
    assert affinity_data(core) == {}


def test_503_when_configmaps_cannot_be_listed(emulator: Any, reap: TestClient) -> None:
    emulator.fault("GET", CM_LIST_PATH, status=500, times=TRANSIENT_RETRIES + 1)
    assert tick(reap, status=503) == summary_of(pools=0, errors=1, retries=TRANSIENT_RETRIES)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"status": 503}, id="503"),
        pytest.param({"status": 429}, id="429"),
        pytest.param({"drop": True}, id="dropped"),
    ],
)
def test_transient_failures_are_retried_and_reported(
    emulator: Any, core: Any, reap: TestClient, fault: dict[str, Any]
) -> None:
    now = datetime.now(UTC)
    write_entries(core, {"ns.demo.0": stale("gone", 0, now)})
    emulator.fault("GET", CM_LIST_PATH, **fault)
    emulator.fault("PUT", f"{CM_LIST_PATH}/*", **fault)
    assert tick(reap) == summary_of(checked=1, released=1, retries=2)
    assert affinity_data(core) == {}


def test_failed_pod_list_is_partial(emulator: Any, core: Any, reap: TestClient) -> None:
    now = datetime.now(UTC)
    core.create_namespace({"metadata": {"name": "other"}})
    write_entries(core, {
        "ns.demo.0": stale("gone", 0, now),
        "other.demo.0": stale("gone", 0, now, namespace="other"),
    })  # fmt: skip
    emulator.fault("GET", "/api/v1/namespaces/ns/pods", status=500, times=TRANSIENT_RETRIES + 1)
    assert tick(reap) == summary_of(checked=2, released=1, errors=1, retries=TRANSIENT_RETRIES)
    assert set(affinity_data(core)) == {"ns.demo.0"}


def test_cronjob_tick_runs_a_sweep(emulator: Any, core: Any, tmp_path: Any) -> None:
    """`python -m common.tick` against a real functions-framework process, as the CronJob does."""
    from bench.loadgen import free_port

    now = datetime.now(UTC)
    write_entries(core, {"ns.demo.0": stale("gone", 0, now)})
    port = free_port()
    env = {**os.environ, "KUBECONFIG": emulator.kubeconfig, "WORKERS": "1"}
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "functions-framework"),
         "--source", "functions/reap.py", "--target", "reap", "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        sent = subprocess.run(
            [sys.executable, "-m", "common.tick", "--connect-retry", "30", url],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout) == summary_of(checked=1, released=1)
        assert affinity_data(core) == {}

        emulator.fault("GET", CM_LIST_PATH, status=500, times=TRANSIENT_RETRIES + 1)
        failed = subprocess.run(
            [sys.executable, "-m", "common.tick", url],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert failed.returncode == 1
        assert "HTTP 503" in failed.stderr
        assert '"errors":1' in failed.stderr
    finally:
        server.terminate()
        server.wait(10)


def test_a_write_whose_answer_was_lost_still_counts_its_releases(
    emulator: Any, core: Any, reap: TestClient
) -> None:
    """The PUT lands but its answer is lost: the retry gets a 409 and the re-read finds the
    entry gone. The sweep removed it, so the summary and the metric say released, not 0."""
    now = datetime.now(UTC)
    write_entries(core, {"ns.demo.0": stale("gone", 0, now), "ns.demo.1": stale("gone", 1, now)})
    before = releases()
    emulator.fault("PUT", f"{CM_LIST_PATH}/*", lose_answer=True)
    assert tick(reap) == summary_of(checked=2, released=2, retries=1)
    assert affinity_data(core) == {}
    assert releases() == before + 2
    assert [s for m, _, s in calls(emulator) if m == "PUT"] == [200, 409]
