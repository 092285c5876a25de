"""Memory and responsiveness of the standalone server under connections that hold on.

Starts `cocoon-webhook` against the API emulator and prints:
- RSS with 1,000 idle TLS connections open (goal: under 150 MiB) and the latency of a review
  sent on a fresh connection meanwhile;
- peak RSS while 16 clients each POST an 8.5 MiB review at once, and the latency of small
  reviews sent one after another meanwhile.

    .venv/bin/python bench/connections_bench.py [--idle 1000] [--large 16]
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import review, workload
from tests.kube_emulator.launcher import EmulatorProcess
from tests.sandbox import Pki, ServerProcess, server_env


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def post(context: ssl.SSLContext, port: int, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    raw = socket.create_connection(("127.0.0.1", port), timeout=120)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        head = f"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode() + body)
        reply = sock.recv(65536)
    return int(reply.split(b" ")[1]), (time.perf_counter() - started) * 1000


def large_body(size: int) -> bytes:
    filler = [{"name": f"env-{i}", "value": "x" * 40} for i in range(size // 64)]
    obj = workload(5)
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = filler
    return json.dumps(review(obj, workload(3))).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--large", type=int, default=16)
    args = parser.parse_args()
    small = json.dumps(review(workload(5), workload(3))).encode()
    with tempfile.TemporaryDirectory() as workdir:
        cluster = EmulatorProcess.start(Path(workdir), seed="sandbox", name="bench")
        pki = Pki.create(Path(workdir) / "pki")
        env = server_env(cluster.kubeconfig, pki, MAX_CONNECTIONS=str(args.idle + 64))
        server = ServerProcess.start(env)
        try:
            port, _ = server.wait_listening()
            pid = server.process.pid
            context = ssl.create_default_context(cafile=str(pki.ca_file))
            post(context, port, small)
            base = rss_mib(pid)
            body = large_body(7_500_000)
            results: list[tuple[int, float]] = []
            threads = [
                threading.Thread(target=lambda: results.append(post(context, port, body)))
                for _ in range(args.large)
            ]
            for thread in threads:
                thread.start()
            # Small reviews one after another for as long as large ones are in flight: one
            # sample would land before, between or during the parses by chance.
            time.sleep(0.2)
            smalls = []
            while any(thread.is_alive() for thread in threads):
                smalls.append(post(context, port, small))
            for thread in threads:
                thread.join()
            print(f"RSS at start                   {base:8.1f} MiB")
            print(f"{args.large} x {len(body) / 2**20:.1f} MiB reviews: statuses "
                  f"{sorted({s for s, _ in results})}, slowest {max(t for _, t in results):.0f} ms,"
                  f" peak RSS {rss_mib(pid, 'VmHWM'):.1f} MiB")  # fmt: skip
            waits = sorted(t for _, t in smalls)
            print(f"{len(smalls)} small reviews during them: statuses "
                  f"{sorted({s for s, _ in smalls})}, median {waits[len(waits) // 2]:.1f} ms, "
                  f"slowest {waits[-1]:.1f} ms")  # fmt: skip
            base = rss_mib(pid)
            held = []
            for _ in range(args.idle):
                raw = socket.create_connection(("127.0.0.1", port), timeout=30)
                held.append(context.wrap_socket(raw, server_hostname="127.0.0.1"))
            time.sleep(1)
            loaded = rss_mib(pid)
            status, latency = post(context, port, small)
            print(f"RSS with {args.idle} idle TLS conns  {loaded:8.1f} MiB  "
                  f"({(loaded - base) * 1024 / max(args.idle, 1):.0f} KiB each)")  # fmt: skip
            print(f"review meanwhile               {status} in {latency:.1f} ms")
            for sock in held:
                sock.close()

        finally:
            server.stop()
            cluster.stop()


if __name__ == "__main__":
    main()
