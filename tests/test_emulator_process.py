"""The emulator as a process: CLI, READY line, kubeconfig, TLS, seeds, the pytest fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from tests.kube_emulator.__main__ import parse_args
from tests.kube_emulator.launcher import REPO_ROOT, EmulatorProcess
from tests.pki import self_signed


def _self_signed(directory: Path) -> tuple[str, str]:
    return self_signed("emulator-test").write(directory)


def test_cli_parses_service_addresses() -> None:
    args = parse_args(
        ["--service-address", "cocoon-system/cocoon-webhook=127.0.0.1:8443", "--seed", "sandbox"]
    )
    assert args.services == {"cocoon-system/cocoon-webhook": "127.0.0.1:8443"}
    assert args.seed == "sandbox"
    assert args.port == 0


def test_cli_rejects_a_malformed_service_address() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--service-address", "no-equals-sign"])


def test_ready_line_and_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.kube_emulator",
            "--port",
            "0",
            "--kubeconfig",
            str(kubeconfig),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:")
        config = json.loads(kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"] == line.split()[1]
        assert config["current-context"] == "emulator"
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_tls_sandbox_seed(tmp_path: Path) -> None:
    """HTTPS with the kubeconfig trusting the certificate; the sandbox seed's cluster."""
    emulator = EmulatorProcess.start(tmp_path, seed="sandbox", tls=_self_signed(tmp_path))
    try:
        assert emulator.url.startswith("https://127.0.0.1:")
        api = emulator.api_client()
        core = client.CoreV1Api(api)
        nodes = {n.metadata.name: n for n in core.list_node().items}
        assert sorted(nodes) == ["cocoon-a", "cocoon-b", "gpu-1", "worker-1"]
        assert nodes["gpu-1"].metadata.labels["cocoonstack.io/pool"] == "gpu"
        assert "cocoonstack.io/pool" not in nodes["worker-1"].metadata.labels
        taint = nodes["cocoon-a"].spec.taints[0]
        assert (taint.key, taint.value, taint.effect) == (
            "virtual-kubelet.io/provider",
            "cocoon",
            "NoSchedule",
        )
        assert nodes["worker-1"].spec.taints is None
        assert all(n.status.conditions[0].type == "Ready" for n in nodes.values())
        assert sorted(n.metadata.name for n in core.list_namespace().items) == [
            "cocoon-system",
            "default",
        ]
        custom = client.CustomObjectsApi(api)
        cs = {
            "apiVersion": "cocoonset.cocoonstack.io/v1",
            "kind": "CocoonSet",
            "metadata": {"name": "demo"},
            "spec": {
                "agent": {"image": "img", "replicas": 1},
                "backend": "kept",
                "toolboxes": [{"name": "tb"}],
            },
        }
        out = custom.create_namespaced_custom_object(
            "cocoonset.cocoonstack.io", "v1", "default", "cocoonsets", cs
        )
        assert out["spec"]["backend"] == "kept"  # unknown spec fields are preserved
        emulator.reset()  # back to the start seed, CRD included
        assert (
            custom.list_namespaced_custom_object(
                "cocoonset.cocoonstack.io", "v1", "default", "cocoonsets"
            )["items"]
            == []
        )
        assert len(core.list_node().items) == 4
    finally:
        emulator.stop()
    assert emulator.process is not None and emulator.process.poll() is not None


def test_emulator_fixture_is_reset_with_an_empty_log(emulator: EmulatorProcess) -> None:
    core = client.CoreV1Api(emulator.api_client())
    assert sorted(n.metadata.name for n in core.list_namespace().items) == [
        "cocoon-system",
        "default",
    ]
    core.create_namespaced_config_map("default", {"metadata": {"name": "left-behind"}})
    assert [(r["method"], r["status"]) for r in emulator.requests()] == [
        ("GET", 200),
        ("POST", 201),
    ]


def test_emulator_fixture_forgets_the_previous_test(emulator: EmulatorProcess) -> None:
    core = client.CoreV1Api(emulator.api_client())
    assert core.list_namespaced_config_map("default").items == []
    assert emulator.requests()[0]["path"] == "/api/v1/namespaces/default/configmaps"
