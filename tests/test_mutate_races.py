"""Races and faults: real `functions-framework` mutate processes against one emulator.

Invariant 4 of SPEC 5.5 (no duplicates, nothing lost or overwritten) is asserted over many
concurrent admissions spread across processes, so the resourceVersion guard is what keeps it,
not a process-local lock. Repeated, because a race that passes once proves little.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from bench.loadgen import free_port
from tests.cluster import add_node, affinity_data, cocoon_pod, pod_review
from tests.functions_app import ROOT
from tests.helpers import patch_of

PROCESSES = 3
ADMISSIONS = 60
RS = "demo-7b7c9d9d5f"


class MutateProcess:
    def __init__(self, kubeconfig: str, env: dict[str, str]) -> None:
        self.port = free_port()
        command = [str(Path(sys.executable).parent / "functions-framework"),
                   "--source", "functions/mutate.py", "--target", "mutate",
                   "--host", "127.0.0.1", "--port", str(self.port)]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, "KUBECONFIG": kubeconfig, **env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                status, _ = self.call("GET", "/readyz", b"")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("mutate did not become ready")

    def call(self, method: str, path: str, body: bytes, timeout: float = 10) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body, {"Content-Type": "application/json"})
            reply = connection.getresponse()
            return reply.status, reply.read()
        finally:
            connection.close()

    def admit(self, pod: dict[str, Any], uid: str) -> tuple[int, dict[str, Any], float]:
        started = time.monotonic()
        status, body = self.call("POST", "/mutate", json.dumps(pod_review(pod, uid=uid)).encode())
        elapsed = time.monotonic() - started
        return status, json.loads(body)["response"] if status == 200 else {}, elapsed

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def start_all(kubeconfig: str, env: dict[str, str] | None = None) -> list[MutateProcess]:
    processes = [MutateProcess(kubeconfig, env or {}) for _ in range(PROCESSES)]
    for process in processes:
        process.wait_ready()
    return processes


@pytest.fixture(scope="module")
def mutators(kube_emulator: Any) -> Iterator[list[MutateProcess]]:
    processes = start_all(kube_emulator.kubeconfig)
    yield processes
    for process in processes:
        process.stop()


@pytest.fixture
def core(emulator: Any, mutators: list[MutateProcess]) -> Any:
    return ready_cluster(emulator, mutators)


def ready_cluster(emulator: Any, mutators: list[MutateProcess]) -> Any:
    """Namespace `ns` and three pool nodes, once every process's caches have them."""
    # The emulator was reset under the processes: wait until every cache has relisted (the
    # last test left pods, nodes and a ConfigMap behind), then until they see the new nodes.
    for process in mutators:
        for cache in ("pods", "nodes", "configmaps"):
            wait_metric(process, cache, 0)
    api = kubernetes.client.CoreV1Api(emulator.api_client())
    api.create_namespace({"metadata": {"name": "ns"}})
    for name in ("cocoon-a", "cocoon-b", "cocoon-c"):
        add_node(api, name)
    for process in mutators:
        wait_metric(process, "nodes", 3)
        process.wait_ready()
    return api


def cache_size(process: MutateProcess, cache: str) -> float | None:
    _, body = process.call("GET", "/metrics", b"")
    found = re.search(
        rf'^cocoon_webhook_cache_objects{{cache="{cache}"}} (\S+)$', body.decode(), re.M
    )
    return float(found.group(1)) if found else None


def wait_metric(process: MutateProcess, cache: str, value: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while cache_size(process, cache) != value:
        assert time.monotonic() < deadline, f"{cache} cache never reached {value}"
        time.sleep(0.05)


def admit_all(processes: list[MutateProcess], pods: list[dict[str, Any]]) -> list[Any]:
    with ThreadPoolExecutor(len(pods)) as pool:
        futures = [
            pool.submit(processes[i % len(processes)].admit, pod, f"uid-{i}")
            for i, pod in enumerate(pods)
        ]
        return [future.result() for future in futures]


def vm_names(results: list[Any]) -> list[str]:
    names = []
    for status, response, _ in results:
        assert status == 200
        assert response["allowed"] is True
        assert "warnings" not in response, response["warnings"]
        ops = patch_of(response)
        names.append(
            next(op["value"] for op in ops if op["path"].endswith("vm.cocoonstack.io~1name"))
        )
    return names


@pytest.mark.parametrize("run", range(3))
def test_concurrent_replicas_get_distinct_dense_slots(
    mutators: list[MutateProcess], core: Any, run: int
) -> None:
    results = admit_all(mutators, [cocoon_pod(rs=RS) for _ in range(ADMISSIONS)])
    names = vm_names(results)
    assert sorted(names) == sorted(f"vk-ns-demo-{slot}" for slot in range(ADMISSIONS))
    data = affinity_data(core)
    assert sorted(data) == sorted(f"ns.demo.{slot}" for slot in range(ADMISSIONS))
    # Every answer's pod name is the one its entry records: nothing overwritten.
    recorded = {json.loads(v)["pod"] for v in data.values()}
    assert len(recorded) == ADMISSIONS


@pytest.mark.parametrize("run", range(2))
def test_concurrent_bare_pods_each_keep_their_entry(
    mutators: list[MutateProcess], core: Any, run: int
) -> None:
    pods = [cocoon_pod(name=f"worker-{i}") for i in range(ADMISSIONS)]
    names = vm_names(admit_all(mutators, pods))
    assert sorted(names) == sorted(f"vk-ns-worker-{i}" for i in range(ADMISSIONS))
    assert sorted(affinity_data(core)) == sorted(f"ns._pod.worker-{i}" for i in range(ADMISSIONS))
