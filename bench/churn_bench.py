"""Churn under API faults: do pods keep their identity while the API server stumbles?

A Deployment of cocoon replicas is kept alive while pods die, with every admission going
through the emulator's admission chain to real mutate processes, the reaper sweeping, and
scripted API faults injected at a set rate. The emulator runs no controllers, so this script
plays the ReplicaSet controller (creates `generateName` pods through the API, as fast as
replicas go missing) and the pod killer. Prints, asserts nothing:

- admissions, and how many failed open (the pod stored without a VM name: it runs without
  identity for good), with the faults injected and what the reaper's sweeps reported;
- invariant checks every few seconds and at the end: unique VM names among live pods, each
  live pod's entry names it and its node, dense slots (the entries' slots are 0..n-1);
- RSS of the mutate processes (process trees) after warm-up and at the end, and the load.

    .venv/bin/python bench/churn_bench.py [--duration 90] [--replicas 20] [--delete-rate 3]
        [--fault-rate 1] [--faults issue|all] [--mutators 2] [--sweep-every 3]

`--faults issue` is the mix of issue 16 (a 500 or a 409 on the ConfigMap write, a 1 s slow
pod LIST, a dropped connection on the ConfigMap read); `all` adds 503s, 429s, a slow write and
a write whose answer is lost after it landed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import ssl
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kubernetes

from bench.loadgen import start_function
from common.config import Settings
from common.kube import ClientKubeApi
from common.reaper import sweep
from tests.cluster import add_node
from tests.helpers.demo import demo_pod
from tests.helpers.server import Pki
from tests.helpers.webhooks import register, webhook_configurations
from tests.kube_emulator.launcher import EmulatorProcess

NAMESPACE = "bench"
VM_NAME = "vm.cocoonstack.io/name"
CM_PATH = "/api/v1/namespaces/cocoon-system/configmaps/cocoon-affinity-default"
CM_LIST = "/api/v1/namespaces/cocoon-system/configmaps"
NODES = ("cocoon-a", "cocoon-b", "cocoon-c")
CREATE_WORKERS = 6

ISSUE_FAULTS: list[tuple[str, str, dict[str, Any]]] = [
    ("PUT", CM_PATH, {"status": 500}),
    ("PUT", CM_PATH, {"status": 409}),
    ("GET", f"/api/v1/namespaces/{NAMESPACE}/pods", {"delay": 1.0}),
    ("GET", CM_PATH, {"drop": True}),
]
MORE_FAULTS: list[tuple[str, str, dict[str, Any]]] = [
    ("PUT", CM_PATH, {"status": 503}),
    ("GET", CM_PATH, {"status": 429, "retry_after": 1}),
    ("PUT", CM_PATH, {"status": 429}),
    ("PUT", CM_PATH, {"lose_answer": True}),
    ("PUT", CM_PATH, {"delay": 2.0}),
    ("GET", "/api/v1/nodes", {"status": 500}),
]


# --- a TLS front for the mutate processes --------------------------------------------------------


class TlsFront:
    """The API server calls webhooks over HTTPS only; functions-framework serves plain HTTP.
    This terminates TLS and hands each connection to the next mutate process in turn."""

    def __init__(self, cert: Path, key: Path, backends: list[int]) -> None:
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(str(cert), str(key))
        self._backends = itertools.cycle(backends)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._context)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", next(self._backends))
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


# --- the cluster's other actors ------------------------------------------------------------------


class Churn:
    def __init__(self, core: Any, replicas: int) -> None:
        self.core = core
        self.replicas = replicas
        self.lock = threading.Lock()
        self.live: set[str] = set()
        self.creating = 0
        self.paused = threading.Event()
        self.stats: Counter[str] = Counter()
        self.creators = ThreadPoolExecutor(CREATE_WORKERS, "create")

    def create(self) -> None:
        pod = demo_pod()
        pod["metadata"]["namespace"] = NAMESPACE
        try:
            stored = self.core.create_namespaced_pod(NAMESPACE, pod)
        except kubernetes.client.exceptions.ApiException as exc:
            with self.lock:
                self.stats[f"create failed {exc.status}"] += 1
            return
        finally:
            with self.lock:
                self.creating -= 1
        name = stored.metadata.name
        annotated = (stored.metadata.annotations or {}).get(VM_NAME)
        with self.lock:
            self.live.add(name)
            self.stats["admissions"] += 1
            if not annotated or not stored.spec.node_name:
                self.stats["fail-opens"] += 1

    def reconcile(self) -> None:
        """The ReplicaSet controller: create pods for every replica missing."""
        with self.lock:
            missing = self.replicas - len(self.live) - self.creating
            self.creating += max(missing, 0)
        for _ in range(missing):
            self.creators.submit(self.create)

    def kill_one(self) -> None:
        with self.lock:
            if not self.live:
                return
            name = random.choice(sorted(self.live))
            self.live.discard(name)
        try:
            self.core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)
            with self.lock:
                self.stats["deletions"] += 1
        except kubernetes.client.exceptions.ApiException:
            with self.lock:
                self.stats["deletions failed"] += 1

    def settle(self, timeout: float = 30) -> None:
        """Wait for creates in flight, so a check sees a quiet cluster."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if self.creating <= 0:
                    return
            time.sleep(0.05)


def every(period: float, action: Any, stop: threading.Event, churn: Churn | None = None) -> None:
    next_at = time.monotonic()
    while not stop.is_set():
        if churn is None or not churn.paused.is_set():
            action()
        next_at += period
        stop.wait(max(next_at - time.monotonic(), 0))


# --- invariants ----------------------------------------------------------------------------------


def read_entries(core: Any) -> dict[str, dict[str, Any]]:
    # A LIST, not a GET: faults target the GET path mutate uses; the checker must not eat them.
    found = core.list_namespaced_config_map(
        "cocoon-system", field_selector="metadata.name=cocoon-affinity-default"
    ).items
    data = (found[0].data or {}) if found else {}
    return {key: json.loads(value) for key, value in data.items()}


def live_pods(core: Any) -> list[Any]:
    # All-namespace LIST with a field selector: not the namespace LIST path faults slow down.
    return core.list_pod_for_all_namespaces(field_selector=f"metadata.namespace={NAMESPACE}").items


def check(core: Any) -> list[str]:
    before = read_entries(core)
    pods = live_pods(core)
    after = read_entries(core)
    problems = []
    names = Counter((p.metadata.annotations or {}).get(VM_NAME) for p in pods)
    problems += [f"VM name {n} on {c} live pods" for n, c in names.items() if n and c > 1]
    for pod in pods:
        vm = (pod.metadata.annotations or {}).get(VM_NAME)
        if not vm:
            continue
        key = f"{NAMESPACE}.demo.{vm.rsplit('-', 1)[1]}"

        def right(entries: dict[str, dict[str, Any]], pod: Any = pod, key: str = key) -> bool:
            entry = entries.get(key) or {}
            return entry.get("pod") == pod.metadata.name and entry.get("node") == pod.spec.node_name

        if not (right(before) or right(after)):
            problems.append(f"entry {key} does not name {pod.metadata.name} on its node")
    slots = sorted(e["slot"] for e in after.values() if e.get("deployment") == "demo")
    if slots != list(range(len(slots))):
        missing = sorted(set(range(max(slots, default=-1) + 1)) - set(slots))
        problems.append(f"slots not dense: {len(slots)} entries, gaps at {missing[:10]}")
    return problems


# --- RSS -----------------------------------------------------------------------------------------


def tree_rss_kib(root: int) -> int:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    family, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        family.update(children)
        frontier += children
    total = 0
    for pid in family:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def scrape(port: int, prefix: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


# --- the run -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=90)
    parser.add_argument("--replicas", type=int, default=20)
    parser.add_argument("--delete-rate", type=float, default=3.0, help="pod deletions a second")
    parser.add_argument("--fault-rate", type=float, default=1.0, help="faults a second (0: none)")
    parser.add_argument("--faults", choices=("issue", "all"), default="issue")
    parser.add_argument("--mutators", type=int, default=2)
    parser.add_argument("--sweep-every", type=float, default=3.0)
    parser.add_argument("--check-every", type=float, default=10.0)
    parser.add_argument("--deadline", default="3s", help="MUTATE_DEADLINE")
    args = parser.parse_args()

    print(f"load average at start: {os.getloadavg()}, cpus: {os.cpu_count()}")
    workdir = Path(tempfile.mkdtemp(prefix="churn-bench-"))
    emulator = EmulatorProcess.start(workdir, seed="namespaces")
    processes: list[Any] = []
    stop = threading.Event()
    try:
        core = kubernetes.client.CoreV1Api(emulator.api_client())
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        for node in NODES:
            add_node(core, node)
        env = {"KUBECONFIG": emulator.kubeconfig, "MUTATE_DEADLINE": args.deadline,
               "WEBHOOK_LOG_LEVEL": "error"}  # fmt: skip
        ports = []
        for _ in range(args.mutators):
            process, port = start_function("functions/mutate.py", "mutate", env)
            processes.append(process)
            ports.append(port)
        pki = Pki.create(workdir / "certs")
        front = TlsFront(pki.cert_file, pki.key_file, ports)
        configurations = webhook_configurations(front.port, pki.ca_file.read_bytes())
        mutating = [c for c in configurations if c["kind"] == "MutatingWebhookConfiguration"]
        register(emulator.api_client(), mutating)

        churn = Churn(core, args.replicas)
        reaper_kube = ClientKubeApi(emulator.kubeconfig)
        settings = Settings.from_env({})
        sweeps: Counter[str] = Counter()

        def reap() -> None:
            summary = sweep(reaper_kube, settings, datetime.now(UTC)).to_json()
            sweeps["sweeps"] += 1
            sweeps["sweeps with errors"] += bool(summary["errors"])
            sweeps["sweep retries"] += summary.get("retries", 0)
            sweeps["released"] += summary["released"]

        kinds = ISSUE_FAULTS + (MORE_FAULTS if args.faults == "all" else [])
        cycle = itertools.cycle(kinds)
        injected: Counter[str] = Counter()

        def inject() -> None:
            method, path, fault = next(cycle)
            emulator.fault(method, path, **fault)
            injected[f"{method} {path.rsplit('/', 1)[1]} {fault}"] += 1

        # Warm up: the first replicas, no faults, no deaths.
        churn.reconcile()
        churn.settle(60)
        rss_start = {p.pid: tree_rss_kib(p.pid) for p in processes}
        started = time.monotonic()
        threads = [
            threading.Thread(target=every, args=(0.05, churn.reconcile, stop, churn)),
            threading.Thread(target=every, args=(1 / args.delete_rate, churn.kill_one, stop,
                                                 churn)),
            threading.Thread(target=every, args=(args.sweep_every, reap, stop)),
        ]  # fmt: skip
        if args.fault_rate > 0:
            threads.append(
                threading.Thread(target=every, args=(1 / args.fault_rate, inject, stop, churn))
            )
        for thread in threads:
            thread.start()
        violations: list[str] = []
        checks = 0
        while time.monotonic() - started < args.duration:
            time.sleep(min(args.check_every, args.duration - (time.monotonic() - started)))
            churn.paused.set()
            churn.settle()
            time.sleep(0.2)
            violations += check(core)
            checks += 1
            churn.paused.clear()
        stop.set()
        for thread in threads:
            thread.join()
        churn.creators.shutdown(wait=True)
        emulator.clear_faults()
        violations += check(core)
        checks += 1
        rss_end = {p.pid: tree_rss_kib(p.pid) for p in processes}
        elapsed = time.monotonic() - started

        stats = churn.stats
        admitted = stats["admissions"]
        deletions = stats["deletions"]
        print(f"duration {elapsed:.0f}s, replicas {args.replicas}, mutate processes "
              f"{args.mutators}, deletions {deletions} ({deletions / elapsed:.1f}/s), "
              f"faults injected {sum(injected.values())} ({args.faults} mix)")  # fmt: skip
        for kind, count in sorted(injected.items()):
            print(f"  {count:>4}  {kind}")
        fail_opens = stats["fail-opens"]
        share = 100 * fail_opens / admitted if admitted else 0.0
        print(f"admissions {admitted}, fail-opens {fail_opens} ({share:.1f}%)")
        for key in sorted(stats):
            if key.startswith("create failed") or key == "deletions failed":
                print(f"  {key}: {stats[key]}")
        decisions: Counter[str] = Counter()
        retries: Counter[str] = Counter()
        for port in ports:
            for series, count in scrape(port, "cocoon_webhook_admission_total{").items():
                decisions[series.split('decision="')[1].split('"')[0]] += int(count)
            for series, count in scrape(port, "cocoon_webhook_api_retries_total{").items():
                retries[series.split("{", 1)[1].rstrip("}")] += int(count)
        print(f"mutate decisions (metrics): {dict(decisions)}")
        if retries:
            print(f"mutate transient retries (metrics): {dict(retries)}")
        print(f"reaper: {dict(sweeps)}")
        print(f"invariant checks {checks}, violations {len(violations)}")
        for problem in violations[:10]:
            print(f"  {problem}")
        for process in processes:
            before, after = rss_start[process.pid], rss_end[process.pid]
            print(f"mutate pid {process.pid} RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} "
                  f"MiB ({(after - before) / 1024:+.1f})")  # fmt: skip
        print(f"load average at end: {os.getloadavg()}")
    finally:
        stop.set()
        for process in processes:
            process.terminate()
            process.wait(10)
        emulator.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
