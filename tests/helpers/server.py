"""`cocoon-webhook` as a subprocess with a throwaway CA: what the sandbox, tests/test_server.py
and the benches start the standalone server with."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import ROOT
from tests.pki import KeyPair, issue, make_ca

START_TIMEOUT_S = 20.0


@dataclass
class Pki:
    """A throwaway CA and one serving certificate for 127.0.0.1 and localhost, as files."""

    directory: Path
    ca: KeyPair
    serial: int = 0

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def cert_file(self) -> Path:
        return self.directory / "tls.crt"

    @property
    def key_file(self) -> Path:
        return self.directory / "tls.key"

    @classmethod
    def create(cls, directory: Path) -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        pki = cls(directory, make_ca("cocoon-webhook sandbox CA", days=7))
        pki.ca_file.write_bytes(pki.ca.cert_pem)
        pki.issue()
        return pki

    def leaf(self, *, expired: bool = False) -> tuple[bytes, bytes, int]:
        """A new serving pair (PEM cert, PEM key) and its serial, signed by the CA."""
        pair = issue(self.ca, "cocoon-webhook", days=7, expired=expired)
        return pair.cert_pem, pair.key_pem, pair.cert.serial_number

    def issue(self, *, expired: bool = False) -> int:
        """Write a new serving pair over tls.crt/tls.key, each file replaced atomically."""
        cert, key, serial = self.leaf(expired=expired)
        _replace(self.key_file, key)
        _replace(self.cert_file, cert)
        self.serial = serial
        return serial


def _replace(path: Path, data: bytes) -> None:
    # A rename, as a Secret volume's `..data` swap: a reader never sees half a file.
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(temp, path)


class ServerExited(RuntimeError):
    def __init__(self, code: int | None, logs: list[dict[str, Any]], output: list[str]) -> None:
        super().__init__(f"cocoon-webhook exited with {code}: {output[-5:]}")
        self.code = code
        self.logs = logs
        self.output = output


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


@dataclass
class ServerProcess:
    """`cocoon-webhook` as a subprocess; its JSON log lines are collected as they arrive."""

    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    echo: bool = False
    _eof: bool = False
    _changed: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def start(cls, env: dict[str, str], *, echo: bool = False) -> ServerProcess:
        process = subprocess.Popen(
            [sys.executable, "-m", "common.server"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return cls.watch(process, echo=echo)

    @classmethod
    def watch(cls, process: subprocess.Popen[str], *, echo: bool = False) -> ServerProcess:
        """Collect the log of a server started elsewhere (stdout piped, text mode)."""
        server = cls(process, echo=echo)
        threading.Thread(target=server._read, daemon=True).start()
        return server

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if self.echo:
                print(line, end="", flush=True)
            with self._changed:
                self.output.append(line.rstrip("\n"))
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict):
                        self.logs.append(entry)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for_log(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = START_TIMEOUT_S
    ) -> dict[str, Any]:
        """The first log line matching `predicate`; ServerExited if the process ends first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for entry in self.logs:
                    if predicate(entry):
                        return entry
                if self._eof:  # every line is in: the process is gone or going
                    raise ServerExited(self.process.wait(), self.logs, self.output)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching log line in {timeout}s: {self.output[-5:]}")
                self._changed.wait(min(remaining, 0.2))

    def wait_listening(self, timeout: float = START_TIMEOUT_S) -> tuple[int, int]:
        """(webhook port, metrics port) from the server's `listening` line."""
        line = self.wait_for_log(lambda entry: entry.get("msg") == "listening", timeout)
        return _port(line["webhookAddr"]), _port(line["metricsAddr"])

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then the exit status (killed after `timeout`)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def server_env(kubeconfig: str, pki: Pki, **overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("KUBECONFIG", "LOG_EXECUTION_ID")
    }
    env.update(
        KUBECONFIG=kubeconfig,
        TLS_CERT=str(pki.cert_file),
        TLS_KEY=str(pki.key_file),
        LISTEN_ADDR="127.0.0.1:0",
        METRICS_ADDR="127.0.0.1:0",
        REAPER_INTERVAL="1m",
        # No endpoints to leave here: stop at once (the drain test sets its own delay).
        SHUTDOWN_DELAY="0s",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env
