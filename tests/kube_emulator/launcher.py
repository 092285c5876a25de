"""Start an emulator subprocess and talk to its controls (used by the pytest plugin and bench).

`EmulatorProcess.start(workdir, ...)` runs `python -m tests.kube_emulator` on a free loopback
port, waits for its `READY <url>` line and returns a handle; `stop()` kills it. The handle's
control methods use plain `urllib` so they work without the kubernetes client.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 20.0


@dataclass
class EmulatorProcess:
    url: str
    kubeconfig: str
    process: subprocess.Popen[str] | None = None
    ca_file: str | None = None
    _ssl: ssl.SSLContext | None = field(default=None, repr=False)

    # -- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        workdir: str | os.PathLike[str],
        *,
        seed: str = "namespaces",
        tls: tuple[str, str] | None = None,
        tls_ca: str | None = None,
        service_addresses: dict[str, str] | None = None,
        name: str = "emulator",
    ) -> EmulatorProcess:
        kubeconfig = str(Path(workdir) / f"{name}.kubeconfig")
        cmd = [
            sys.executable,
            "-m",
            "tests.kube_emulator",
            "--port",
            "0",
            "--kubeconfig",
            kubeconfig,
            "--seed",
            seed,
            # the child watches this pipe: if we die without stop(), it exits too
            "--exit-with-stdin",
        ]
        if tls:
            cmd += ["--tls", tls[0], tls[1]]
        if tls_ca:
            cmd += ["--tls-ca", tls_ca]
        for key, address in (service_addresses or {}).items():
            cmd += ["--service-address", f"{key}={address}"]
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=None,
            stdin=subprocess.PIPE,
            text=True,
        )
        line: list[str] = []
        reader = threading.Thread(
            target=lambda: line.append(proc.stdout.readline() if proc.stdout else ""), daemon=True
        )
        reader.start()
        reader.join(READY_TIMEOUT)
        if not line or not line[0].startswith("READY "):
            proc.kill()
            proc.wait()
            raise RuntimeError(
                f"kube emulator did not start: {line[0] if line else 'no READY line'!r}"
            )
        # keep draining stdout so the child never blocks on a full pipe
        threading.Thread(target=_drain, args=(proc,), daemon=True).start()
        url = line[0].split(None, 1)[1].strip()
        return cls(url, kubeconfig, proc, tls_ca or (tls[0] if tls else None))

    def stop(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # -- the kubernetes client -------------------------------------------------------------------

    def api_client(self) -> Any:
        """A fresh kubernetes.client.ApiClient configured from the emulator's kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig)  # type: ignore[no-untyped-call]

    # -- controls --------------------------------------------------------------------------------

    def _control(self, method: str, what: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}/_emulator/{what}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        if self.url.startswith("https") and self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=self.ca_file)
        with urllib.request.urlopen(req, timeout=30, context=self._ssl) as resp:
            raw = resp.read()
        return json.loads(raw) if raw.strip() else None

    def reset(self, seed: str | None = None) -> None:
        """Empty the store and re-seed it (by default with the seed the process started with)."""
        self._control("POST", "reset", {"seed": seed} if seed else {})

    def requests(self) -> list[dict[str, Any]]:
        """The request log: [{"method", "path", "query": {...}, "status"}] in completion order."""
        return self._control("GET", "requests")  # type: ignore[no-any-return]

    def clear_requests(self) -> None:
        self._control("DELETE", "requests")

    def audit(self) -> list[dict[str, Any]]:
        """Audit events of writes that reached a webhook, with their `annotations`."""
        return self._control("GET", "audit")  # type: ignore[no-any-return]

    def fault(
        self,
        method: str,
        path_pattern: str,
        *,
        status: int | None = None,
        delay: float = 0,
        drop: bool = False,
        times: int = 1,
        retry_after: int | None = None,
        lose_answer: bool = False,
        watch: str | None = None,
        after: int = 0,
    ) -> None:
        """Script the next `times` responses to `method` on paths matching the fnmatch pattern
        (`retry_after` goes with a `status`; `lose_answer` serves the request, then drops; with
        `watch`: the next watches, see tests/kube_emulator/control.py)."""
        fault: dict[str, Any] = {
            "method": method,
            "path": path_pattern,
            "status": status,
            "delay": delay,
            "drop": drop,
            "times": times,
            "loseAnswer": lose_answer,
        }
        if retry_after is not None:
            fault["retryAfter"] = retry_after
        if watch is not None:
            fault.update(watch=watch, after=after)
        self._control("POST", "faults", fault)

    def clear_faults(self) -> None:
        self._control("DELETE", "faults")

    def pending_faults(self) -> list[dict[str, Any]]:
        """Scripted faults not yet used up; a fault's `times` counts down as requests start."""
        return self._control("GET", "faults")  # type: ignore[no-any-return]

    def create_many(self, path: str, objects: list[dict[str, Any]]) -> None:
        """Create objects through the REST rules in one control call; `path` may name
        `{namespace}`, filled from each object's metadata."""
        self._control("POST", "objects", {"path": path, "objects": objects})

    def compact(self) -> int:
        """Drop the watch event log: older resourceVersions then answer 410 Gone."""
        return int(self._control("POST", "compact")["compacted"])


def _drain(proc: subprocess.Popen[str]) -> None:
    if proc.stdout is None:
        return
    for _line in proc.stdout:
        pass
