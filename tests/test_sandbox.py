"""`make sandbox-check`: the whole local stack, end to end, through an API server's admission
chain: the emulator's, and a real kube-apiserver's (`CLUSTER=real`, where the ReplicaSet
controller makes the pods).

The API server calls the standalone server over HTTPS, verified against the sandbox CA, under
the standalone install's own webhook configurations: a cocoon pod gets a VM name and a node, and
scale-downs, an invalid CocoonSet and a second CocoonHibernation for one pod are denied with the
API server's message.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT


@pytest.mark.parametrize(
    ("cluster", "hang_s"),
    [("emulator", 180), pytest.param("real", 360, marks=pytest.mark.control_plane)],
)
def test_sandbox_check_passes_and_cleans_up(tmp_path: Path, cluster: str, hang_s: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.sandbox", "--check", "--dir", str(tmp_path / "sandbox"),
         "--cluster", cluster],
        # A hang fails here; how long it takes is not this test's business (a loaded machine).
        cwd=ROOT, capture_output=True, text=True, timeout=hang_s, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("OK (")
    assert any("vk-default-demo-0 on cocoon-" in line for line in lines)
    assert any("vk-default-demo-1 on cocoon-" in line for line in lines)
    assert sum("denied (cocoon-webhook: " in line for line in lines) == 5
    assert any(line.startswith("  CocoonHibernation demo-") for line in lines)
    assert any("second CocoonHibernation: denied (cocoon-webhook: pod " in line for line in lines)
    # Everything it started is gone: the API server and both server ports refuse connections.
    ports = re.findall(r"127\.0\.0\.1:(\d+)", lines[0])
    assert len(ports) == 3, lines[0]
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
