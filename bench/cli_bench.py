"""How long `kubectl cocoon` takes to read and show 1k, 10k and 50k affinity entries.

The workload is reap_bench's (pools of at most 2,000 entries over 10 namespaces, a third live,
a third newly missing, a third missing for an hour). Each command runs through `common.cli.main`
with the real client against the API emulator (its request log gives the counts) and against an
in-memory FakeKube, which isolates the plugin's own CPU time (judging and printing). The emulator
shares the machine and is Python too, so its column is an upper bound, not a cluster figure.

    .venv/bin/python bench/cli_bench.py [--sizes 1000,10000,50000]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.reap_bench import seed_emulator, seed_fake, workload
from common import cli
from common.kube import ClientKubeApi, KubeApi
from tests.kube_emulator.launcher import EmulatorProcess

COMMANDS = (
    ("res -A", ["res", "-A"]),
    ("res -A -o json", ["res", "-A", "-o", "json"]),
    ("pools", ["pools"]),
    ("unpin --dry-run", ["unpin", "--node", "cocoon-3", "--dry-run"]),
)


def timed(kube: KubeApi, argv: list[str], now: datetime) -> tuple[float, int]:
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    code = cli.main(argv, kube=kube, env={}, out=out, err=err, now=lambda: now)
    elapsed = time.perf_counter() - started
    assert code == 0, err.getvalue()
    return elapsed, len(out.getvalue().splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'entries':>8} {'command':<16} | {'emulator':>9} {'requests':>8} | "
          f"{'memory':>8} | {'lines out':>9}")  # fmt: skip
    with tempfile.TemporaryDirectory() as workdir:
        emulator = EmulatorProcess.start(workdir)
        try:
            for size in sizes:
                now = datetime.now(UTC)
                load = workload(size, now)
                seed_emulator(emulator, load)
                client = ClientKubeApi(emulator.kubeconfig)
                client.server_version(5)  # connect before timing
                fake = seed_fake(load)
                for label, argv in COMMANDS:
                    emulator.clear_requests()
                    real_s, lines = timed(client, argv, now)
                    requests = len(emulator.requests())
                    memory_s, _ = timed(fake, argv, now)
                    print(f"{size:>8} {label:<16} | {real_s:>8.2f}s {requests:>8} | "
                          f"{memory_s:>7.2f}s | {lines:>9}")  # fmt: skip
        finally:
            emulator.stop()


if __name__ == "__main__":
    main()
