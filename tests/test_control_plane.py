"""The real control plane of tests/control_plane: its cached build and its launcher.

Tests that need the binaries skip (outside CI) when `go` is missing; see the plugin.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.control_plane import build, launcher
from tests.control_plane.launcher import ControlPlane, ControlPlaneFailed
from tests.control_plane.pytest_plugin import unavailable
from tests.helpers import ROOT

# -- the build -----------------------------------------------------------------------------------


@pytest.fixture
def module_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the Go module the build step then uses, with an empty binary cache."""
    copy = tmp_path / "go"
    shutil.copytree(build.GO_MODULE, copy)
    monkeypatch.setattr(build, "GO_MODULE", copy)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return copy


def test_cache_key_follows_go_mod_go_sum_and_the_etcd_main(module_copy: Path) -> None:
    original = build.source_hash()
    for name in ("go.sum", "go.mod", "etcd/main.go"):
        path = module_copy / name
        text = path.read_text()
        path.write_text(text + "\n")
        assert build.source_hash() != original, name
        path.write_text(text)
    assert build.source_hash() == original


def test_a_cache_entry_needs_all_three_binaries(module_copy: Path) -> None:
    directory = build.binaries_dir()
    directory.mkdir(parents=True)
    for name in ("etcd", "kube-apiserver"):
        (directory / name).write_bytes(b"")
    assert build.cached() is None
    (directory / "kube-controller-manager").write_bytes(b"")
    assert build.cached() == directory
    # A cached set is used as is: no Go needed.
    assert build.ensure_built() == directory


def test_missing_go_is_named(module_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(module_copy))
    with pytest.raises(build.GoMissing, match="`go` not on PATH"):
        build.ensure_built()


@pytest.mark.control_plane
def test_a_failed_build_names_the_module_and_version(module_copy: Path) -> None:
    if shutil.which("go") is None:
        unavailable("control plane: `go` not on PATH")
    go_mod = module_copy / "go.mod"
    go_mod.write_text(
        go_mod.read_text().replace(
            "k8s.io/api => k8s.io/api v0.37.2", "k8s.io/api => k8s.io/api v0.37.99"
        )
    )
    with pytest.raises(build.BuildFailed) as failed:
        build.ensure_built()
    assert failed.value.culprit == "k8s.io/api@v0.37.99 (missing go.sum entry)"
    assert str(failed.value).startswith("control plane build failed in k8s.io/api@v0.37.99")
    # Nothing half-built is left to be mistaken for a cache entry.
    assert [p.name for p in build.cache_root().iterdir()] == [".lock"]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            "# k8s.io/apiserver/pkg/admission\n"
            "k8s.io/apiserver@v0.37.2/pkg/admission/chain.go:12:3: undefined: Handler\n",
            "k8s.io/apiserver@v0.37.2",
        ),
        (
            "go: downloading k8s.io/api v0.37.9\n"
            "go: k8s.io/api@v0.37.9: reading https://proxy.golang.org/k8s.io/api/@v/v0.37.9.zip: "
            "404 Not Found\n",
            "k8s.io/api@v0.37.9",
        ),
        (
            "verifying go.etcd.io/etcd/server/v3@v3.7.0: checksum mismatch\n",
            "go.etcd.io/etcd/server/v3@v3.7.0",
        ),
    ],
)
def test_culprit_of_go_build_output(output: str, expected: str) -> None:
    assert build.culprit(output) == expected


# -- the launcher --------------------------------------------------------------------------------


def _binaries() -> Path:
    try:
        return build.ensure_built()
    except build.ControlPlaneUnavailable as exc:
        unavailable(str(exc))


def _processes_using(directory: Path) -> list[str]:
    """Command lines of live processes that name `directory` (ours pass it in their flags)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in cmdline and int(proc.name) != os.getpid():
            found.append(cmdline)
    return found


def _refused(url: str) -> bool:
    host, port = url.removeprefix("https://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.control_plane
def test_launcher_prints_ready_writes_a_kubeconfig_and_stops_on_sigterm(tmp_path: Path) -> None:
    _binaries()
    workdir, kubeconfig = tmp_path / "plane", tmp_path / "admin.kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.control_plane", "--kubeconfig", str(kubeconfig),
         "--workdir", str(workdir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line: list[str] = []
        stdout = proc.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(180)
        assert line and re.fullmatch(r"READY https://127\.0\.0\.1:\d+\n", line[0]), line
        url = line[0].split()[1]
        api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        names = {ns.metadata.name for ns in api.list_namespace().items}
        assert {"default", "kube-system"} <= names
        running = " ".join(_processes_using(workdir))
        for binary in ("/etcd ", "/kube-apiserver ", "/kube-controller-manager "):
            assert binary in running
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    assert _processes_using(workdir) == []
    assert _refused(url)


@pytest.mark.control_plane
def test_a_start_timeout_stops_everything_and_shows_the_logs(tmp_path: Path) -> None:
    _binaries()
    with pytest.raises(ControlPlaneFailed) as failed:
        ControlPlane.start(tmp_path, timeout=0.5)
    message = str(failed.value)
    assert message.startswith("control plane: /readyz not ready within 0 s")
    for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
        assert f"--- {name} (exit " in message
    assert _processes_using(tmp_path) == []


@pytest.mark.control_plane
def test_a_port_taken_meanwhile_means_another_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _binaries()
    picks = []
    real_free_ports = launcher._free_ports

    def first_one_taken(count: int) -> list[int]:
        ports = real_free_ports(count)
        if not picks:
            ports[0] = taken.getsockname()[1]  # etcd's client port: someone else's by now
        picks.append(ports)
        return ports

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(launcher, "_free_ports", first_one_taken)
        plane = ControlPlane.start(tmp_path)
        try:
            assert len(picks) == 2
            assert plane.url == f"https://127.0.0.1:{picks[1][2]}"
        finally:
            plane.stop()
    assert _processes_using(tmp_path) == []


def test_the_controllers_run(control_plane: ControlPlane) -> None:
    api = control_plane.api_client()
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    ns = f"cp-{os.getpid()}"
    core.create_namespace({"metadata": {"name": ns}})
    labels = {"app": "web"}
    apps.create_namespaced_deployment(ns, {
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    })  # fmt: skip

    def pods() -> list[str]:
        return [p.metadata.name for p in core.list_namespaced_pod(ns).items]

    _wait(lambda: len(pods()) == 2, "the ReplicaSet controller's 2 pods")
    assert all(name.startswith("web-") for name in pods())
    assert core.read_namespaced_service_account("default", ns)
    assert core.read_namespaced_config_map("kube-root-ca.crt", ns)
    # Unscheduled pods go at once; the garbage collector follows the owner chain.
    apps.delete_namespaced_deployment("web", ns, propagation_policy="Background")
    _wait(lambda: pods() == [], "the garbage collector to delete the pods")
    core.delete_namespace(ns)
    _wait(lambda: ns not in {n.metadata.name for n in core.list_namespace().items}, "ns gone")
    assert "apiserver_request_total{" in control_plane.metrics_text()


def _wait(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
