"""mutate as the cluster grows: latency, API requests per admission, RSS and time to first sync.

For each cluster size, a fresh emulator gets `--nodes` pool nodes, `--namespaces` namespaces and
that many pods spread over them (a quarter on pool nodes, carrying VM names), then one mutate
function starts as a real `functions-framework` process. Printed per size:

- sync: seconds from the process start until `/readyz` answers 200 (the caches' first sync);
- rss: the process's resident memory once ready, in MB;
- req/adm: API requests per admission (watches excluded), from the emulator's request log,
  over `--budget` sequential admissions, each a new Deployment replica in a random namespace;
- p50/p99 in ms at concurrency 1 and 8, over `--admissions` new Deployment replicas each.

Then (`--pool N`, 0 skips it) one pool of N bare pods, admitted at concurrency 8 and swept twice
by the reaper (mark, then release past the grace): how many ConfigMaps it spans, how many
admissions failed open ("configmap full" or other), and what each sweep took.

Figures only, nothing asserted. The machine may be shared: quote them with that caveat.

    .venv/bin/python bench/scale_bench.py [--pods 0,10000,50000] [--nodes 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import start_function
from tests.cluster import VK_TAINT, cocoon_pod, pod_review
from tests.kube_emulator.launcher import EmulatorProcess

CHUNK = 2000


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its descendants (functions-framework serves from a
    gunicorn worker, a child of the process it starts)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending.extend(int(child) for child in children.read().split())
        except OSError:
            continue
    return total / 1024


def populate(emulator: EmulatorProcess, pods: int, nodes: int, namespaces: int) -> None:
    names = [f"team-{i}" for i in range(namespaces)]
    emulator.create_many("/api/v1/namespaces", [{"metadata": {"name": n}} for n in names])
    pool_nodes = [f"cocoon-{i}" for i in range(nodes)]
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    emulator.create_many(
        "/api/v1/nodes",
        [{"metadata": {"name": n, "labels": {"cocoonstack.io/pool": "default"}},
          "spec": {"taints": [VK_TAINT]}, "status": ready} for n in pool_nodes]
        + [{"metadata": {"name": f"worker-{i}"}, "status": ready} for i in range(nodes)],
    )  # fmt: skip
    batch: list[dict[str, Any]] = []
    for i in range(pods):
        ns = names[i % namespaces]
        cocoon = i % 4 == 0
        node = pool_nodes[i % nodes] if cocoon else f"worker-{i % nodes}"
        annotations = {"vm.cocoonstack.io/name": f"vk-{ns}-app-{i}"} if cocoon else {}
        batch.append({
            "metadata": {"name": f"app-{i}", "namespace": ns, "annotations": annotations,
                         "labels": {"app": f"app-{i % 50}"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1"}]},
        })  # fmt: skip
        if len(batch) == CHUNK:
            emulator.create_many("/api/v1/namespaces/{namespace}/pods", batch)
            batch = []
    if batch:
        emulator.create_many("/api/v1/namespaces/{namespace}/pods", batch)


def wait_ready(port: int, started: float) -> float:
    while time.monotonic() - started < 300:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
                if reply.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("mutate never became ready")


class Client:
    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def admit(self, pod: dict[str, Any]) -> tuple[float, bool]:
        started = time.perf_counter()
        self.connection.request("POST", "/mutate", json.dumps(pod_review(pod)).encode(),
                                {"Content-Type": "application/json"})  # fmt: skip
        reply = self.connection.getresponse()
        body = json.loads(reply.read())
        return (time.perf_counter() - started) * 1000, "warnings" in body["response"]


class Replicas:
    """New Deployment replicas, round-robin over namespaces and a few Deployments each."""

    def __init__(self, namespaces: int) -> None:
        self._lock = threading.Lock()
        self._n = 0
        self._namespaces = namespaces

    def next(self) -> dict[str, Any]:
        with self._lock:
            self._n += 1
            n = self._n
        pod = cocoon_pod(rs=f"d{n % 5}-7b7c9d9d5f", namespace=f"team-{n % self._namespaces}")
        pod["metadata"]["name"] = f"bench-{n}"
        return pod


def requests_per_admission(emulator: EmulatorProcess, client: Client, replicas: Replicas,
                           count: int) -> float:  # fmt: skip
    total = 0
    for _ in range(count):
        emulator.clear_requests()
        client.admit(replicas.next())
        total += sum(
            1 for r in emulator.requests()
            if not r["path"].startswith("/_emulator") and r["query"].get("watch") != "true"
        )  # fmt: skip
    return total / count


def latencies(
    port: int, replicas: Replicas, concurrency: int, count: int
) -> tuple[list[float], int]:
    results: list[float] = []
    warned = 0
    lock = threading.Lock()
    left = iter(range(count))

    def worker() -> None:
        nonlocal warned
        client = Client(port)
        while True:
            with lock:
                if next(left, None) is None:
                    return
            elapsed, warning = client.admit(replicas.next())
            with lock:
                results.append(elapsed)
                warned += warning

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(results), warned


def quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run(pods: int, args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory() as workdir:
        emulator = EmulatorProcess.start(workdir, seed="namespaces")
        try:
            seeding = time.monotonic()
            populate(emulator, pods, args.nodes, args.namespaces)
            seeded = time.monotonic() - seeding
            started = time.monotonic()
            process, port = start_function(
                "functions/mutate.py", "mutate", {"KUBECONFIG": emulator.kubeconfig}
            )
            try:
                sync = wait_ready(port, started)
                rss = rss_mb(process.pid)
                replicas = Replicas(args.namespaces)
                budget = requests_per_admission(emulator, Client(port), replicas, args.budget)
                row = f"{pods:>7}{seeded:>8.1f}{sync:>7.2f}{rss:>8.1f}{budget:>9.2f}"
                for concurrency in (1, 8):
                    ordered, warned = latencies(port, replicas, concurrency, args.admissions)
                    row += f"{quantile(ordered, 0.5):>9.1f}{quantile(ordered, 0.99):>9.1f}"
                    row += f"{warned:>6}"
                return row
            finally:
                process.terminate()
                process.wait(10)
        finally:
            emulator.stop()


def big_pool(entries: int, args: argparse.Namespace) -> None:
    from datetime import UTC, datetime, timedelta

    from common import reaper
    from common.config import Settings
    from common.kube import ClientKubeApi
    from common.naming import AFFINITY_NAMESPACE, MANAGED_BY_LABEL, MANAGED_BY_VALUE

    with tempfile.TemporaryDirectory() as workdir:
        emulator = EmulatorProcess.start(workdir, seed="namespaces")
        try:
            populate(emulator, 0, args.nodes, args.namespaces)
            process, port = start_function(
                "functions/mutate.py", "mutate", {"KUBECONFIG": emulator.kubeconfig}
            )
            try:
                wait_ready(port, time.monotonic())
                started = time.monotonic()
                failed: dict[str, int] = {}
                lock = threading.Lock()
                left = iter(range(entries))

                def worker() -> None:
                    client = Client(port)
                    while True:
                        with lock:
                            n = next(left, None)
                        if n is None:
                            return
                        pod = cocoon_pod(name=f"vm-{n}", namespace=f"team-{n % args.namespaces}")
                        try:
                            client.connection.request(
                                "POST", "/mutate", json.dumps(pod_review(pod)).encode(),
                                {"Content-Type": "application/json"})  # fmt: skip
                            reply = client.connection.getresponse().read()
                        except (OSError, http.client.HTTPException):
                            # A connection the server closed under load: counted, then a new one.
                            with lock:
                                failed["connection lost"] = failed.get("connection lost", 0) + 1
                            client = Client(port)
                            continue
                        body = json.loads(reply)["response"]
                        for warning in body.get("warnings", []):
                            reason = warning.split("(", 1)[-1].split(")", 1)[0]
                            with lock:
                                failed[reason] = failed.get(reason, 0) + 1

                threads = [threading.Thread(target=worker) for _ in range(8)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                admitted = time.monotonic() - started
            finally:
                process.terminate()
                process.wait(10)
            kube = ClientKubeApi(emulator.kubeconfig)
            settings = Settings.from_env({"REAPER_GRACE": "30m", "AFFINITY_INFLIGHT_WINDOW": "30s"})
            managed = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
            configmaps = kube.list_configmaps(AFFINITY_NAMESPACE, managed, 60)
            now = datetime.now(UTC) + timedelta(minutes=1)
            timings = []
            for at in (now, now + timedelta(minutes=31)):
                began = time.monotonic()
                summary = reaper.sweep(kube, settings, at)
                timings.append((time.monotonic() - began, summary))
            print(f"\npool of {entries} bare pods over {args.namespaces} namespaces, concurrency 8")
            print(f"  admitted in {admitted:.1f} s; failed open: {failed or 'none'}")
            print(f"  configmaps: {len(configmaps)} (pools: {timings[0][1].pools})")
            for title, (took, summary) in zip(("mark", "release"), timings, strict=True):
                print(f"  sweep ({title}): {took:.1f} s, checked {summary.checked}, "
                      f"marked {summary.marked}, released {summary.released}, "
                      f"errors {summary.errors}")  # fmt: skip
        finally:
            emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", default="0,10000,50000")
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--namespaces", type=int, default=40)
    parser.add_argument("--admissions", type=int, default=200)
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--pool", type=int, default=20000)
    args = parser.parse_args()
    random.seed(1)
    print(f"{args.nodes} pool nodes, {args.namespaces} namespaces; each admission a new "
          "Deployment replica (ms; 'warn' = admitted without a reservation)")  # fmt: skip
    print(f"{'pods':>7}{'seed s':>8}{'sync s':>7}{'rss MB':>8}{'req/adm':>9}"
          f"{'c1 p50':>9}{'c1 p99':>9}{'warn':>6}"
          f"{'c8 p50':>9}{'c8 p99':>9}{'warn':>6}")  # fmt: skip
    for pods in (int(p) for p in args.pods.split(",") if p):
        print(run(pods, args), flush=True)
    if args.pool:
        big_pool(args.pool, args)


if __name__ == "__main__":
    main()
