"""Sweep time and API requests of the reaper for 1k, 10k and 50k affinity entries.

Entries are spread over pools of at most 2,000 (about 0.5 MB of data each, well under the API
server's 1 MiB object limit) and over 10 namespaces; a third have a pod, a third are newly missing
(marked), a third were marked an hour ago (released). Each size is swept twice: the first sweep
writes every pool, the second finds nothing to change. Figures come from `common.reaper.sweep`
over the real client against the API emulator (its request log gives the counts), and over an
in-memory FakeKube, which isolates the reaper's own CPU time. The emulator shares the machine
and is Python too, so the emulator column is an upper bound, not a cluster figure.

    .venv/bin/python bench/reap_bench.py [--sizes 1000,10000,50000]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kubernetes

from common.config import Settings
from common.kube import ClientKubeApi, ConfigMap, KubeApi
from common.naming import AFFINITY_NAMESPACE, affinity_configmap_name, affinity_labels
from common.reaper import Summary, sweep
from common.reservation import CONFIGMAP_DATA_LIMIT, Reservation, data_bytes, encode
from tests.fakes import FakeKube
from tests.kube_emulator.launcher import EmulatorProcess

PER_POOL = 2000
NAMESPACES = 10
PODS_PER_NAMESPACE = 20
DEPLOYMENTS = 20
SETTINGS = Settings.from_env({"REAPER_GRACE": "30m", "AFFINITY_INFLIGHT_WINDOW": "30s"})


@dataclass(frozen=True)
class Workload:
    pools: dict[str, dict[str, str]]
    pods: list[tuple[str, str]]  # (namespace, name)

    @property
    def namespaces(self) -> list[str]:
        return sorted({ns for ns, _ in self.pods})


def workload(entries: int, now: datetime) -> Workload:
    pools: dict[str, dict[str, str]] = {}
    for p in range(math.ceil(entries / PER_POOL)):
        pool = f"pool-{p}"
        data: dict[str, str] = {}
        for j in range(min(PER_POOL, entries - p * PER_POOL)):
            ns = f"team-{j % NAMESPACES}"
            deployment = f"agents-{(j // NAMESPACES) % DEPLOYMENTS}"
            slot = j // (NAMESPACES * DEPLOYMENTS)
            kind = j % 3  # 0 present, 1 newly missing, 2 missing for an hour
            pod = f"p-{j % PODS_PER_NAMESPACE}" if kind == 0 else f"{deployment}-gone-{slot}"
            value = Reservation(
                pool=pool, namespace=ns, deployment=deployment, slot=slot,
                vm_name=f"vk-{ns}-{deployment}-{slot}", pod=pod, node=f"cocoon-{slot % 7}",
                updated_at=now - timedelta(hours=3),
                missing_since=now - timedelta(hours=1) if kind == 2 else None,
            )  # fmt: skip
            data[f"{ns}.{deployment}.{slot}"] = encode(value)
        assert data_bytes(data) < CONFIGMAP_DATA_LIMIT
        pools[pool] = data
    pods = [(f"team-{n}", f"p-{i}") for n in range(NAMESPACES) for i in range(PODS_PER_NAMESPACE)]
    return Workload(pools, pods)


def configmap(pool: str, data: dict[str, str]) -> ConfigMap:
    return ConfigMap(
        name=affinity_configmap_name(pool), namespace=AFFINITY_NAMESPACE, data=data,
        labels=affinity_labels(pool),
    )  # fmt: skip


def pod_json(namespace: str, name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"nodeName": "cocoon-0", "containers": [{"name": "agent", "image": "agent:1"}]},
        "status": {"phase": "Running"},
    }


def seed_emulator(emulator: EmulatorProcess, load: Workload) -> None:
    emulator.reset("namespaces")
    core = kubernetes.client.CoreV1Api(emulator.api_client())
    for ns in load.namespaces:
        core.create_namespace({"metadata": {"name": ns}})
    for ns, name in load.pods:
        body = pod_json(ns, name)
        del body["status"]
        core.create_namespaced_pod(ns, body)
    for pool, data in load.pools.items():
        core.create_namespaced_config_map(AFFINITY_NAMESPACE, configmap(pool, data).to_json())


def seed_fake(load: Workload) -> FakeKube:
    fake = FakeKube()
    fake.pods = [pod_json(ns, name) for ns, name in load.pods]
    for pool, data in load.pools.items():
        cm = configmap(pool, data)
        cm.resource_version = "1"
        fake.configmaps[(AFFINITY_NAMESPACE, cm.name)] = cm
    return fake


def timed(kube: KubeApi, now: datetime) -> tuple[float, Summary]:
    started = time.perf_counter()
    summary = sweep(kube, SETTINGS, now)
    return time.perf_counter() - started, summary


def request_mix(log: list[dict[str, Any]]) -> str:
    kinds: Counter[str] = Counter()
    for entry in log:
        what = "pods" if entry["path"].endswith("/pods") else "configmaps"
        verb = (
            "LIST" if entry["method"] == "GET" and entry["path"].endswith(what) else entry["method"]
        )
        kinds[f"{verb} {what}"] += 1
    return ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'entries':>8} {'pools':>5} {'ns':>3} {'max cm bytes':>12} | "
          f"{'sweep 1 (emulator)':>18} {'req':>4} {'sweep 2':>8} {'req':>4} | "
          f"{'sweep 1 (memory)':>16} {'sweep 2':>8} | requests of sweep 1")  # fmt: skip
    with tempfile.TemporaryDirectory() as workdir:
        emulator = EmulatorProcess.start(workdir)
        try:
            for size in sizes:
                now = datetime.now(UTC)
                load = workload(size, now)
                biggest = max(data_bytes(d) for d in load.pools.values())

                seed_emulator(emulator, load)
                client = ClientKubeApi(emulator.kubeconfig)
                client.server_version(5)  # connect before timing
                emulator.clear_requests()
                first_s, first = timed(client, now)
                first_log = emulator.requests()
                emulator.clear_requests()
                second_s, second = timed(client, now)
                second_log = emulator.requests()

                fake = seed_fake(load)
                mem_first_s, mem_first = timed(fake, now)
                mem_second_s, _ = timed(fake, now)
                assert mem_first.to_json() == first.to_json(), (mem_first, first)
                assert first.errors == second.errors == 0

                print(f"{size:>8} {len(load.pools):>5} {len(load.namespaces):>3} {biggest:>12} | "
                      f"{first_s:>17.2f}s {len(first_log):>4} {second_s:>7.2f}s "
                      f"{len(second_log):>4} | {mem_first_s:>15.2f}s {mem_second_s:>7.2f}s | "
                      f"{request_mix(first_log)}")  # fmt: skip
                print(f"{'':>8} sweep 1: {first.encode().decode()}")
        finally:
            emulator.stop()


if __name__ == "__main__":
    main()
