"""mutate against the emulator or a real API server: API requests per admission, throughput and
latency.

Starts the emulator (seeded like the sandbox: nodes cocoon-a, cocoon-b in pool `default`), or with
`--cluster real` the control plane of tests/control_plane given the same nodes, and one mutate
function as a real `functions-framework` process, then prints:

1. API requests per admission, from the emulator's request log (on the real API server: the
   growth of `apiserver_request_total` across the admission, watches and the API server's own
   lease renewals left out), for SPEC 13's cases: a fresh
   Deployment replica (pick), the steady state (a replacement taking over its slot and sticky
   node), a re-admission inside the in-flight window, and a bare pod with a sticky node.
2. Throughput and p50/p99 latency at concurrency 1 and 8, each admission a new bare pod.

    .venv/bin/python bench/mutate_bench.py [--seconds 5] [--cluster real]
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kubernetes

from bench.loadgen import start_function
from tests.cluster import apply_patch, cocoon_pod, pod_review
from tests.control_plane.launcher import ControlPlane
from tests.control_plane.nodes import add_ready_node
from tests.kube_emulator import seed
from tests.kube_emulator.launcher import EmulatorProcess

RS = "demo-7b7c9d9d5f"


class Client:
    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def admit(self, pod: dict[str, Any]) -> dict[str, Any]:
        self.connection.request("POST", "/mutate", json.dumps(pod_review(pod)).encode(),
                                {"Content-Type": "application/json"})  # fmt: skip
        reply = self.connection.getresponse()
        body = reply.read()
        assert reply.status == 200, body
        response: dict[str, Any] = json.loads(body)["response"]
        return response

    def wait_ready(self) -> None:
        """Until /readyz says the caches hold their first sync: their LISTs are not admissions'."""
        while True:
            self.connection.request("GET", "/readyz")
            reply = self.connection.getresponse()
            reply.read()
            if reply.status == 200:
                return
            time.sleep(0.05)


def api_calls(emulator: EmulatorProcess) -> Counter[str]:
    counts: Counter[str] = Counter()
    for request in emulator.requests():
        if not request["path"].startswith("/_emulator"):
            counts[f"{request['method']} {request['path']}"] += 1
    return counts


_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def request_totals(plane: ControlPlane) -> Counter[str]:
    """apiserver_request_total by verb and resource: resource requests other than watches and
    lease renewals (the controllers' discovery and the API server's heartbeat)."""
    counts: Counter[str] = Counter()
    for sample in _SAMPLE.finditer(plane.metrics_text()):
        labels = dict(_LABEL.findall(sample["labels"]))
        # watches stream; leases are the API server's heartbeat; no scope: /openapi, /version
        if labels["verb"] == "WATCH" or labels["resource"] == "leases" or not labels["scope"]:
            continue
        resource = "/".join(filter(None, (labels["resource"], labels["subresource"])))
        counts[f"{labels['verb']} {resource}"] += int(float(sample["value"]))
    return counts


def counter(cluster: EmulatorProcess | ControlPlane) -> Callable[[Callable[[], Any]], Any]:
    """`count(action)`: the action's result and the API requests it caused."""

    def on_emulator(action: Callable[[], Any]) -> tuple[Any, Counter[str]]:
        assert isinstance(cluster, EmulatorProcess)
        cluster.clear_requests()
        result = action()
        return result, api_calls(cluster)

    def on_real(action: Callable[[], Any]) -> tuple[Any, Counter[str]]:
        assert isinstance(cluster, ControlPlane)
        before = request_totals(cluster)
        result = action()
        grown = request_totals(cluster)
        grown.subtract(before)
        return result, +grown

    return on_emulator if isinstance(cluster, EmulatorProcess) else on_real


def measure_budget(count: Callable[[Callable[[], Any]], Any], client: Client, core: Any) -> None:
    def case(title: str, pod: dict[str, Any], store: bool = True) -> dict[str, Any]:
        response, calls = count(lambda: client.admit(pod))
        print(f"  {title:<52}{sum(calls.values()):>3}  {dict(calls)}")
        if store:
            core.create_namespaced_pod("ns", apply_patch(pod, response))
        return response

    client.wait_ready()
    print("API requests per admission (issue 10: one write; SPEC 13's budget was <= 4)")
    case("first replica (creates the pool's ConfigMap)", cocoon_pod(rs=RS))
    first = core.list_namespaced_pod("ns").items[0].metadata.name
    core.delete_namespaced_pod(first, "ns", grace_period_seconds=0)
    again = cocoon_pod(rs=RS)
    again["metadata"]["name"] = first
    case("re-admission inside the in-flight window", again, store=False)
    # Age every claim so only liveness holds slots: the steady state of a long-running pool.
    data = core.read_namespaced_config_map("cocoon-affinity-default", "cocoon-system").data
    aged = {k: json.dumps({**json.loads(v), "updatedAt": "2020-01-01T00:00:00Z"},
                          separators=(",", ":")) for k, v in data.items()}  # fmt: skip
    core.patch_namespaced_config_map("cocoon-affinity-default", "cocoon-system", {"data": aged})
    case("replacement: takeover of the slot, sticky node", cocoon_pod(rs=RS))
    case("new bare pod (picks)", cocoon_pod(name="alone"))
    core.delete_namespaced_pod("alone", "ns", grace_period_seconds=0)
    time.sleep(0.05)
    case("re-created bare pod, sticky node (inside window)", cocoon_pod(name="alone"), False)


def load(port: int, concurrency: int, seconds: float) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    warnings = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    counter = iter(range(10**9))

    def worker() -> None:
        nonlocal warnings
        client = Client(port)
        while time.monotonic() < stop_at:
            with lock:
                n = next(counter)
            started = time.perf_counter()
            response = client.admit(cocoon_pod(name=f"load-{n}"))
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                warnings += "warnings" in response

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return int(len(latencies) / (time.monotonic() - started)), latencies, warnings


def start_cluster(kind: str, workdir: str) -> EmulatorProcess | ControlPlane:
    if kind == "emulator":
        return EmulatorProcess.start(workdir, seed="sandbox")
    plane = ControlPlane.start(Path(workdir))
    api = plane.api_client()
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "cocoon-system"}})
    for node in seed.sandbox_nodes():
        add_ready_node(api, node)
    return plane


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--cluster", choices=("emulator", "real"), default="emulator")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        cluster = start_cluster(args.cluster, workdir)
        # The throughput runs admit thousands of pods that never appear; the per-namespace bound
        # on unconfirmed claims (1,000 by default) would fail the rest open by design.
        env = {
            "KUBECONFIG": cluster.kubeconfig,
            "AFFINITY_MAX_UNCONFIRMED_PER_NAMESPACE": "1000000",
        }
        process, port = start_function("functions/mutate.py", "mutate", env)
        try:
            core = kubernetes.client.CoreV1Api(cluster.api_client())
            core.create_namespace({"metadata": {"name": "ns"}})
            if args.cluster == "real":  # ServiceAccount admission waits for the controller
                while not core.list_namespaced_service_account("ns").items:
                    time.sleep(0.1)
            print(f"on the {args.cluster} API server")
            measure_budget(counter(cluster), Client(port), core)
            print("\nthroughput, a new bare pod per admission (fresh pick each time)")
            print(f"{'conc':>6}{'adm/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'fail-open':>11}")
            for concurrency in (1, 8):
                rate, latencies, warnings = load(port, concurrency, args.seconds)
                ordered = sorted(latencies)
                p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
                print(f"{concurrency:>6}{rate:>8}{statistics.median(latencies):>9.1f}"
                      f"{p99:>9.1f}{warnings:>11}")  # fmt: skip
        finally:
            process.terminate()
            process.wait(10)
            cluster.stop()


if __name__ == "__main__":
    main()
