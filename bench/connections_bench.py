"""Memory and responsiveness of the standalone server under connections that hold on.

Starts `cocoon-webhook` against the API emulator and prints:
- for 4 and 8.5 MiB reviews, each parsed on the event loop (`inline`, as before common.offload)
  and as the server does (`worker`: in a worker process up to 4 MiB): the peak memory while 16
  clients each POST one at once (the server's own peak RSS, and the peak PSS of the server with
  every process it started, which is what the container's limit sees), and the latency of small
  reviews sent one after another meanwhile on one kept-alive connection;
- RSS with 1,000 idle TLS connections open (goal: under 150 MiB) and the latency of a review
  sent on a fresh connection meanwhile.

    .venv/bin/python bench/connections_bench.py [--idle 1000] [--large 16] [--mib 4 8.5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import review, workload
from tests.helpers.server import Pki, ServerProcess, server_env
from tests.kube_emulator.launcher import EmulatorProcess
from tests.test_server_bounds import descendants

# Imported by the server at start (sitecustomize), this parses every body on the event loop.
INLINE = "import common.offload\ncommon.offload.OFFLOAD_BODY_BYTES = 1 << 62\n"


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pss_mib(pids: set[int]) -> float:
    """Proportional set size of `pids` together: shared pages counted once, as a cgroup does."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total / 1024


@contextlib.contextmanager
def peak_pss(pid: int) -> Iterator[list[float]]:
    """The highest PSS of `pid` and its descendants while the block runs (sampled every 50 ms)."""
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], pss_mib({pid} | descendants(pid)))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def post(context: ssl.SSLContext, port: int, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    raw = socket.create_connection(("127.0.0.1", port), timeout=120)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        head = f"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode() + body)
        reply = sock.recv(65536)
    return int(reply.split(b" ")[1]), (time.perf_counter() - started) * 1000


class KeptAlive:
    """One TLS connection kept open, as the API server keeps its own: no handshake per review,
    and no closed connection for the server to keep (uvicorn holds one that was closed without
    a TLS close_notify until its keep-alive timer fires)."""

    def __init__(self, context: ssl.SSLContext, port: int) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.reader = self.sock.makefile("rb")

    def post(self, body: bytes) -> tuple[int, float]:
        started = time.perf_counter()
        head = f"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        self.sock.sendall(head.encode() + body)
        status = int(self.reader.readline().split(b" ")[1])
        length = 0
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        self.reader.read(length)
        return status, (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def large_body(size: int) -> bytes:
    filler = [{"name": f"env-{i}", "value": "x" * 40} for i in range(size // 64)]
    obj = workload(5)
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = filler
    return json.dumps(review(obj, workload(3))).encode()


SMALL = json.dumps(review(workload(5), workload(3))).encode()


def large_reviews(
    context: ssl.SSLContext, port: int, pid: int, count: int, size: int, label: str
) -> None:
    body = large_body(size)
    results: list[tuple[int, float]] = []
    threads = [
        threading.Thread(target=lambda: results.append(post(context, port, body)))
        for _ in range(count)
    ]
    with peak_pss(pid) as peak:
        for thread in threads:
            thread.start()
        # Small reviews one after another for as long as large ones are in flight: one
        # sample would land before, between or during the parses by chance.
        time.sleep(0.2)
        smalls = []
        kept = KeptAlive(context, port)
        while any(thread.is_alive() for thread in threads):
            smalls.append(kept.post(SMALL))
        kept.close()
        for thread in threads:
            thread.join()
    waits = sorted(t for _, t in smalls)
    processes = len(descendants(pid))
    print(f"[{label}] {count} x {len(body) / 2**20:.1f} MiB reviews: statuses "
          f"{sorted({s for s, _ in results})}, slowest {max(t for _, t in results):.0f} ms; "
          f"peak RSS {rss_mib(pid, 'VmHWM'):.1f} MiB (server), "
          f"peak PSS {peak[0]:.1f} MiB (server and its {processes} processes)")  # fmt: skip
    print(f"[{label}] {len(smalls)} small reviews during them: statuses "
          f"{sorted({s for s, _ in smalls})}, median {waits[len(waits) // 2]:.1f} ms, "
          f"slowest {waits[-1]:.1f} ms")  # fmt: skip


def idle_connections(context: ssl.SSLContext, port: int, pid: int, count: int) -> None:
    base = rss_mib(pid)
    held = []
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        held.append(context.wrap_socket(raw, server_hostname="127.0.0.1"))
    time.sleep(1)
    loaded = rss_mib(pid)
    status, latency = post(context, port, SMALL)
    print(f"RSS with {count} idle TLS conns  {loaded:8.1f} MiB  "
          f"({(loaded - base) * 1024 / max(count, 1):.0f} KiB each), "
          f"PSS with its processes {pss_mib({pid} | descendants(pid)):.1f} MiB")  # fmt: skip
    print(f"review meanwhile               {status} in {latency:.1f} ms")
    for sock in held:
        sock.close()


@contextlib.contextmanager
def serving(
    workdir: Path, cluster: EmulatorProcess, pki: Pki, idle: int, mode: str
) -> Iterator[tuple[int, int]]:
    """The server's port and process id, after one review; mode "inline" parses every body on
    the event loop."""
    env = server_env(cluster.kubeconfig, pki, MAX_CONNECTIONS=str(idle + 64))
    if mode == "inline":
        site = workdir / "inline"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(INLINE)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    # As the image runs it: a script, which the decoding worker preloads by path.
    command = [str(Path(sys.executable).parent / "cocoon-webhook")]
    server = ServerProcess.watch(
        subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    )  # fmt: skip
    try:
        port, _ = server.wait_listening()
        post(ssl.create_default_context(cafile=str(pki.ca_file)), port, SMALL)
        yield port, server.process.pid
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--large", type=int, default=16)
    parser.add_argument(
        "--mib", type=float, nargs="+", default=[4.0, 8.5], help="sizes of the large reviews"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        cluster = EmulatorProcess.start(workdir, seed="sandbox", name="bench")
        pki = Pki.create(workdir / "pki")
        context = ssl.create_default_context(cafile=str(pki.ca_file))
        try:
            for mib in args.mib:
                size = int(mib * 2**20 * 7_500_000 / 8_913_318)  # filler for a body that size
                for mode in ("inline", "worker"):
                    with serving(workdir, cluster, pki, args.idle, mode) as (port, pid):
                        large_reviews(context, port, pid, args.large, size, mode)
            with serving(workdir, cluster, pki, args.idle, "worker") as (port, pid):
                print(f"RSS at start                   {rss_mib(pid):8.1f} MiB")
                idle_connections(context, port, pid, args.idle)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
