"""Sequential GET and PUT rates of the Kubernetes API emulator through the official client.

    .venv/bin/python bench/emulator_bench.py [--seconds 3] [--tls]

Starts the emulator as tests do (a subprocess on a free loopback port), then times one client
reading one ConfigMap back to back, and replacing it with its current resourceVersion back to
back. The emulator must never dominate test time: the target is ≥ 500 GET/s on a 2-core
machine. The figures include the client's own (de)serialisation, which is most of the cost.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client

from tests.kube_emulator.launcher import EmulatorProcess
from tests.pki import self_signed

TARGET_GET_PER_SECOND = 500


def _certificate(workdir: Path) -> tuple[str, str]:
    return self_signed("kube-emulator").write(workdir)


def rate(seconds: float, step: object) -> tuple[int, float]:
    """Run `step()` back to back for about `seconds`; return (count, per second)."""
    count = 0
    began = time.perf_counter()
    deadline = began + seconds
    while time.perf_counter() < deadline:
        step()  # type: ignore[operator]
        count += 1
    return count, count / (time.perf_counter() - began)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument(
        "--tls", action="store_true", help="serve HTTPS (a self-signed certificate)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tls = _certificate(Path(tmp)) if args.tls else None
        emulator = EmulatorProcess.start(tmp, tls=tls)
        try:
            v1 = client.CoreV1Api(emulator.api_client())
            cm = v1.create_namespaced_config_map(
                "default", {"metadata": {"name": "bench"}, "data": {"n": "0"}}
            )
            for _ in range(50):  # warm up the connection pool and both processes
                v1.read_namespaced_config_map("bench", "default")

            gets, get_rate = rate(
                args.seconds, lambda: v1.read_namespaced_config_map("bench", "default")
            )

            state = {"cm": cm}

            def put() -> None:
                current = state["cm"]
                current.data["n"] = str(int(current.data["n"]) + 1)
                state["cm"] = v1.replace_namespaced_config_map("bench", "default", current)

            puts, put_rate = rate(args.seconds, put)
        finally:
            emulator.stop()

    scheme = "https" if args.tls else "http"
    print(f"kube emulator ({scheme}), one kubernetes client, sequential:")
    print(f"  GET  {get_rate:8.0f} /s  ({gets} requests)")
    print(f"  PUT  {put_rate:8.0f} /s  ({puts} requests)")
    ok = get_rate >= TARGET_GET_PER_SECOND
    print(f"  target ≥ {TARGET_GET_PER_SECOND} GET/s: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
