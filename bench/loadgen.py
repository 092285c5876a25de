"""A small keep-alive HTTP/1.1 load generator (asyncio, one process) and server launcher.

Kept dependency-free so the figures measure the servers, not a client library.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.kube_emulator.launcher import EmulatorProcess

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_function(
    source: str, target: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "functions-framework"),
        "--source", source, "--target", target, "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    return _start(command, port, target, env)


def start_uvicorn(app: str) -> tuple[subprocess.Popen[bytes], int]:
    """`app` ("module:attribute") under plain uvicorn, one process, its default loop and parser."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    return _start(command, port, app, None)


def _start(
    command: list[str], port: int, target: str, env: dict[str, str] | None
) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "WORKERS": "1", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process, port
        except urllib.error.HTTPError:
            return process, port  # it answered: up, even if it has no health route
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{target} exited with {process.returncode}") from None
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{target} did not start")


@contextlib.contextmanager
def function_on_emulator(
    source: str, target: str, env: dict[str, str] | None = None
) -> Iterator[tuple[EmulatorProcess, int]]:
    """An emulator seeded like the sandbox and one function process using it; both stopped."""
    with tempfile.TemporaryDirectory() as workdir:
        emulator = EmulatorProcess.start(workdir, seed="sandbox")
        try:
            process, port = start_function(
                source, target, {"KUBECONFIG": emulator.kubeconfig, **(env or {})}
            )
            try:
                yield emulator, port
            finally:
                process.terminate()
                process.wait(10)
        finally:
            emulator.stop()


def _request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def _worker(
    port: int, payload: bytes, stop_at: float, latencies: list[float], errors: list[int]
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    count = 0
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(payload)
            status = await _read_response(reader)
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200:
                errors.append(status)
            count += 1
    finally:
        writer.close()
    return count


async def _load(port: int, path: str, body: bytes, concurrency: int, seconds: float) -> Result:
    payload = _request(path, body)
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    counts = await asyncio.gather(
        *(_worker(port, payload, started + seconds, latencies, errors) for _ in range(concurrency))
    )
    return Result(sum(counts), time.perf_counter() - started, latencies, len(errors))


def load(port: int, path: str, body: bytes, concurrency: int, seconds: float) -> Result:
    # A short warm-up so imports, JIT-free caches and connection setup are not measured.
    asyncio.run(_load(port, path, body, concurrency, min(0.5, seconds)))
    return asyncio.run(_load(port, path, body, concurrency, seconds))
