"""Throughput and latency of validate and validate_cocoonset against a trivial function.

Starts all three as real `functions-framework` processes (one worker, ASGI mode, as deployed),
loads each in turn with realistic AdmissionReview bodies at concurrency 1 and 32, and prints
req/s, p50/p99 and the ratio to the trivial function. Target: >= 70% of trivial, p99 <= 25 ms
at concurrency 32. The load generator shares the machine, so figures are relative, not absolute.

    .venv/bin/python bench/admission_bench.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import Result, load, start_function
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
    return {
        "validate": json.dumps(deployment).encode(),
        "validate_cocoonset": json.dumps(cocoonset).encode(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    payloads = bodies()
    targets = {
        "trivial": ("bench/trivial.py", "/", payloads["validate"]),
        "validate": ("functions/validate.py", "/validate", payloads["validate"]),
        "validate_cocoonset": (
            "functions/validate_cocoonset.py", "/validate-cocoonset",
            payloads["validate_cocoonset"],
        ),
    }  # fmt: skip
    processes = {}
    try:
        for name, (source, _, _) in targets.items():
            processes[name] = start_function(source, name)
        print(
            f"{'function':<20}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs trivial':>12}"
        )
        for concurrency in (1, 32):
            baseline: Result | None = None
            for name, (_, path, body) in targets.items():
                result = load(processes[name][1], path, body, concurrency, args.seconds)
                baseline = baseline or result
                ratio = result.rate / baseline.rate if baseline.rate else float("nan")
                errors = f"  errors={result.errors}" if result.errors else ""
                print(
                    f"{name:<20}{concurrency:>5}{result.rate:>10.0f}{result.p50:>9.2f}"
                    f"{result.quantile(0.99):>9.2f}{ratio:>11.0%}{errors}"
                )
    finally:
        for process, _ in processes.values():
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
