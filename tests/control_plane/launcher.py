"""Start a real control plane (etcd, kube-apiserver, kube-controller-manager) on loopback.

`ControlPlane.start(workdir)` builds the binaries if this machine has not yet (see build.py),
writes a throwaway PKI into `workdir` (one cluster CA `ca.crt` signing the serving certificate
and the client certificates, as kubeadm does; service-account signing keys), starts the three
processes on free 127.0.0.1 ports, waits until `/readyz` answers and the controllers have made
the `default` ServiceAccount (pods are rejected before that), and returns a handle. `stop()`
stops every process by PID. Each child gets SIGKILL from the kernel if the process that
started it dies first (`PR_SET_PDEATHSIG`), so a killed test run leaves nothing behind.

No scheduler and no kubelet run: pods stay Pending unless something sets `spec.nodeName`
(the mutating webhook does), and deletions with a grace period wait for a kubelet forever.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.control_plane import build
from tests.pki import KeyPair, client, issue, make_ca

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ISSUER = "https://kubernetes.default.svc.cluster.local"
# What the webhook's tests need: workloads make pods, namespaces get their default
# ServiceAccount and root CA, owners' deletion cascades. No node lifecycle (no kubelets to
# watch) and no pod GC (it deletes pods bound to nodes that do not exist).
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
)
LOG_TAIL_LINES = 20
STOP_GRACE_S = 10.0
PORT_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1


class ControlPlaneFailed(RuntimeError):
    """The control plane did not come up; the message carries the last lines of its logs."""


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class ControlPlane:
    url: str
    kubeconfig: str
    workdir: Path
    processes: list[_Process] = field(default_factory=list, repr=False)
    _ssl: ssl.SSLContext | None = field(default=None, repr=False)

    # -- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def start(
        cls, workdir: Path, timeout: float = 60.0, *, extra_apiserver_args: Sequence[str] = ()
    ) -> ControlPlane:
        """Start all three on free loopback ports; raise ControlPlaneFailed (everything
        stopped, log tails in the message) when not ready within `timeout` seconds.
        Raises build.ControlPlaneUnavailable when the binaries cannot be built.

        `extra_apiserver_args` go after the launcher's own kube-apiserver flags (a repeated
        flag's last value wins), e.g. `--admission-control-config-file=...` or the audit flags;
        relative paths are taken from `workdir`."""
        binaries = build.ensure_built()
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(PORT_ATTEMPTS):
            try:
                return cls._start_once(binaries, workdir, timeout, extra_apiserver_args)
            except ControlPlaneFailed as exc:
                # A free port we picked was taken before our process bound it (a busy machine).
                if "address already in use" not in str(exc) or attempt == PORT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _start_once(
        cls, binaries: Path, workdir: Path, timeout: float, extra_apiserver_args: Sequence[str]
    ) -> ControlPlane:
        deadline = time.monotonic() + timeout
        shutil.rmtree(workdir / "etcd", ignore_errors=True)  # every start is a new cluster
        etcd_port, peer_port, api_port = _free_ports(3)
        url = f"https://127.0.0.1:{api_port}"
        _write_pki(workdir)
        kubeconfig = workdir / "admin.kubeconfig"
        _write_kubeconfig(kubeconfig, url, workdir, "admin")
        _write_kubeconfig(
            workdir / "controller-manager.kubeconfig", url, workdir, "controller-manager"
        )
        plane = cls(url, str(kubeconfig), workdir)
        try:
            plane._spawn("etcd", binaries / "etcd", _etcd_args(workdir, etcd_port, peer_port))
            plane._spawn(
                "kube-apiserver",
                binaries / "kube-apiserver",
                [*_apiserver_args(workdir, api_port, etcd_port), *extra_apiserver_args],
            )
            plane._spawn(
                "kube-controller-manager",
                binaries / "kube-controller-manager",
                _controller_manager_args(workdir),
            )
            plane._wait(plane._ready, "/readyz", deadline, timeout)
            plane._wait(
                plane._default_service_account, "the default ServiceAccount", deadline, timeout
            )
        except BaseException:
            plane.stop()
            raise
        return plane

    def stop(self) -> None:
        """SIGTERM each process (newest first), SIGKILL what is still up after a grace."""
        for process in reversed(self.processes):
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
            try:
                process.popen.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        self.processes.clear()

    def logs_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(
            f"--- {p.name} (exit {p.popen.poll()}), {p.log}:\n{p.tail(lines)}"
            for p in self.processes
        )

    def _spawn(self, name: str, binary: Path, args: list[str]) -> None:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [str(binary), *args],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only an async-signal-safe prctl
            )
        self.processes.append(_Process(name, popen, log))

    def _wait(self, check: Callable[[], bool], what: str, deadline: float, timeout: float) -> None:
        while True:
            dead = [p for p in self.processes if p.popen.poll() is not None]
            if dead:
                raise ControlPlaneFailed(
                    f"{dead[0].name} exited with {dead[0].popen.returncode} before "
                    f"{what} was ready:\n{self.logs_tail()}"
                )
            if check():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneFailed(
                    f"control plane: {what} not ready within {timeout:.0f} s:\n{self.logs_tail()}"
                )
            time.sleep(0.2)

    def _ready(self) -> bool:
        return self._get_status("/readyz") == 200

    def _default_service_account(self) -> bool:
        return self._get_status("/api/v1/namespaces/default/serviceaccounts/default") == 200

    # -- talking to it ---------------------------------------------------------------------------

    def api_client(self) -> Any:
        """A fresh kubernetes.client.ApiClient as the cluster admin (system:masters)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig)  # type: ignore[no-untyped-call]

    def metrics_text(self) -> str:
        """The API server's Prometheus metrics (`GET /metrics` as the admin)."""
        with self._open("/metrics") as resp:
            return resp.read().decode()  # type: ignore[no-any-return]

    def _open(self, path: str, timeout: float = 10.0) -> Any:
        if self._ssl is None:
            context = ssl.create_default_context(cafile=str(self.workdir / "ca.crt"))
            context.load_cert_chain(self.workdir / "admin.crt", self.workdir / "admin.key")
            self._ssl = context
        return urllib.request.urlopen(f"{self.url}{path}", timeout=timeout, context=self._ssl)

    def _get_status(self, path: str) -> int:
        try:
            with self._open(path, timeout=5.0) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return err.code
        except (OSError, ssl.SSLError):
            return 0


# -- processes ------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_ports(count: int) -> list[int]:
    # Held open together so the kernel hands out distinct ports.
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _etcd_args(workdir: Path, port: int, peer_port: int) -> list[str]:
    peer = f"http://127.0.0.1:{peer_port}"
    return [
        "--name=default",
        f"--data-dir={workdir / 'etcd'}",
        f"--listen-client-urls=http://127.0.0.1:{port}",
        f"--advertise-client-urls=http://127.0.0.1:{port}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        # Throwaway data: a loaded CI disk's fsyncs only slow every write down.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def _apiserver_args(workdir: Path, port: int, etcd_port: int) -> list[str]:
    return [
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={workdir / 'apiserver.crt'}",
        f"--tls-private-key-file={workdir / 'apiserver.key'}",
        f"--client-ca-file={workdir / 'ca.crt'}",
        f"--service-account-issuer={SERVICE_ISSUER}",
        f"--service-account-key-file={workdir / 'sa.pub'}",
        f"--service-account-signing-key-file={workdir / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        # The `kubernetes` Service's endpoints would be 127.0.0.1, which Endpoints reject.
        "--endpoint-reconciler-type=none",
        f"--cert-dir={workdir / 'apiserver-certs'}",
        "--profiling=false",
    ]


def _controller_manager_args(workdir: Path) -> list[str]:
    return [
        f"--kubeconfig={workdir / 'controller-manager.kubeconfig'}",
        f"--controllers={','.join(CONTROLLERS)}",
        f"--service-account-private-key-file={workdir / 'sa.key'}",
        f"--root-ca-file={workdir / 'ca.crt'}",
        "--use-service-account-credentials=true",
        "--leader-elect=false",
        "--secure-port=0",  # nothing probes it; no port to collide on
        # The default 20/s makes a scale to 60 replicas crawl.
        "--kube-api-qps=100",
        "--kube-api-burst=200",
    ]


# -- PKI and kubeconfigs -------------------------------------------------------------------------


def _write_pki(workdir: Path) -> None:
    ca = make_ca("cocoon-webhook control plane CA", days=7)
    ca.write(workdir, "ca")
    names = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
    issue(ca, "kube-apiserver", dns=names, ips=("127.0.0.1", "10.0.0.1"), days=7).write(
        workdir, "apiserver"
    )
    client(ca, "kubernetes-admin", groups=("system:masters",), days=7).write(workdir, "admin")
    client(ca, "system:kube-controller-manager", days=7).write(workdir, "controller-manager")
    sa_key = ec.generate_private_key(ec.SECP256R1())
    KeyPair(sa_key, ca.cert).write(workdir, "sa")  # sa.key; sa.crt is unused
    (workdir / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _write_kubeconfig(path: Path, url: str, workdir: Path, user: str) -> None:
    def data(name: str) -> str:
        return base64.b64encode((workdir / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "control-plane",
                "cluster": {"server": url, "certificate-authority-data": data("ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": data(f"{user}.crt"),
                    "client-key-data": data(f"{user}.key"),
                },
            }
        ],
        "contexts": [{"name": user, "context": {"cluster": "control-plane", "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
