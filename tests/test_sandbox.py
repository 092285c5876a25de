"""`make sandbox-check`: the whole local stack, end to end, through an API server's admission
chain: the emulator's, and a real kube-apiserver's (`CLUSTER=real`, where the ReplicaSet
controller makes the pods).

The API server calls the standalone server over HTTPS, verified against the sandbox CA, under
the standalone install's own webhook configurations: a cocoon pod gets a VM name and a node, and
scale-downs and an invalid CocoonSet are denied with the API server's message.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sandbox import ROOT


@pytest.mark.parametrize(
    ("cluster", "budget_s"),
    [("emulator", 30), pytest.param("real", 120, marks=pytest.mark.control_plane)],
)
def test_sandbox_check_passes_and_cleans_up(tmp_path: Path, cluster: str, budget_s: int) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tests.sandbox", "--check", "--dir", str(tmp_path / "sandbox"),
         "--cluster", cluster],
        cwd=ROOT, capture_output=True, text=True, timeout=budget_s * 2, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("OK (")
    assert any("vk-default-demo-0 on cocoon-" in line for line in lines)
    assert any("vk-default-demo-1 on cocoon-" in line for line in lines)
    assert sum("denied (cocoon-webhook: " in line for line in lines) == 3
    assert elapsed < budget_s
    # Everything it started is gone: the API server and both server ports refuse connections.
    ports = re.findall(r"127\.0\.0\.1:(\d+)", lines[0])
    assert len(ports) == 3, lines[0]
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
