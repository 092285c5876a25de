"""Throughput and latency of each admission function against a trivial function and plain uvicorn.

Starts validate, validate_cocoonset, mutate and the trivial function as real `functions-framework`
processes (one worker, ASGI mode, as deployed) and a bare ASGI app under plain uvicorn, loads each
in turn with realistic AdmissionReview bodies at concurrency 1 and 32, and prints req/s, p50/p99
and the ratios to the trivial function (same mode) and to plain uvicorn. mutate is measured on
a pod that is not a cocoon pod (most of the cluster's pods): its reservations are in
bench/mutate_bench.py. Goal at concurrency 32 on an idle 2-core machine: validate and
validate_cocoonset >= 5,500 req/s, p99 < 25 ms. The load generator shares the machine, so
compare ratios from one run rather than absolute figures across runs.

    .venv/bin/python bench/admission_bench.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import Result, load, start_function, start_uvicorn
from tests.cluster import cocoon_pod
from tests.helpers import review, workload

COCOONSET = {
    "apiVersion": "cocoonset.cocoonstack.io/v1",
    "kind": "CocoonSet",
    "metadata": {"name": "agents", "namespace": "team-a"},
    "spec": {
        "agent": {"image": "ghcr.io/cocoonstack/agent:1.4", "replicas": 3, "mode": "clone",
                  "os": "linux", "storage": "100Gi",
                  "resources": {"limits": {"cpu": "4", "memory": "8Gi"}}},
        "toolboxes": [
            {"name": "browser", "image": "ghcr.io/cocoonstack/browser:2", "mode": "run"},
            {"name": "win", "mode": "static", "staticIP": "10.0.0.5", "staticVMID": "vm-17",
             "os": "windows"},
        ],
        "snapshotPolicy": "main-only",
    },
}  # fmt: skip


def bodies() -> dict[str, bytes]:
    # An UPDATE that grows the workload: allowed, so the figures are not dominated by deny logs.
    deployment = review(workload(4), workload(3), namespace="team-a", name="agents")
    cocoonset = review(
        COCOONSET, None, operation="CREATE", kind="CocoonSet", group="cocoonset.cocoonstack.io",
        resource="cocoonsets", namespace="team-a", name="agents",
    )  # fmt: skip
    pod = cocoon_pod(name="web-1", namespace="team-a")
    pod["spec"]["tolerations"] = []
    plain_pod = review(pod, None, operation="CREATE", kind="Pod", group="", resource="pods",
                       namespace="team-a", name="web-1")  # fmt: skip
    return {
        "validate": json.dumps(deployment).encode(),
        "validate_cocoonset": json.dumps(cocoonset).encode(),
        "mutate": json.dumps(plain_pod).encode(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    payloads = bodies()
    functions = {
        "trivial": ("bench/trivial.py", "/", payloads["validate"]),
        "validate": ("functions/validate.py", "/validate", payloads["validate"]),
        "validate_cocoonset": (
            "functions/validate_cocoonset.py", "/validate-cocoonset",
            payloads["validate_cocoonset"],
        ),
        "mutate": ("functions/mutate.py", "/mutate", payloads["mutate"]),
    }  # fmt: skip
    processes = {}
    # No API server is needed: validate's UPDATE grows the workload and mutate's pod is not a
    # cocoon pod, so neither makes a Kubernetes call. A kubeconfig must still load.
    env = {"KUBECONFIG": str(_offline_kubeconfig())}
    try:
        processes["plain uvicorn"] = start_uvicorn("bench.plain_asgi:app")
        for name, (source, _, _) in functions.items():
            processes[name] = start_function(source, name, env)
        print(f"{'server':<20}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'vs trivial':>12}{'vs uvicorn':>12}")  # fmt: skip
        for concurrency in (1, 32):
            plain = load(processes["plain uvicorn"][1], "/", payloads["validate"], concurrency,
                         args.seconds)  # fmt: skip
            _row("plain uvicorn", concurrency, plain, None, plain)
            trivial: Result | None = None
            for name, (_, path, body) in functions.items():
                result = load(processes[name][1], path, body, concurrency, args.seconds)
                trivial = trivial or result
                _row(name, concurrency, result, trivial, plain)
    finally:
        for process, _ in processes.values():
            process.terminate()
            process.wait(10)


def _row(
    name: str, concurrency: int, result: Result, trivial: Result | None, plain: Result
) -> None:
    def ratio(base: Result | None) -> str:
        return f"{result.rate / base.rate:>11.0%}" if base and base.rate else f"{'':>11}"

    errors = f"  errors={result.errors}" if result.errors else ""
    print(
        f"{name:<20}{concurrency:>5}{result.rate:>10.0f}{result.p50:>9.2f}"
        f"{result.quantile(0.99):>9.2f} {ratio(trivial)} {ratio(plain)}{errors}"
    )


def _offline_kubeconfig() -> Path:
    path = Path(tempfile.gettempdir()) / "cocoon-bench.kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }))  # fmt: skip
    return path


if __name__ == "__main__":
    main()
