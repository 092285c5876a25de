"""The local sandbox (`make run`, SPEC 14): the standalone server behind an emulated API server.

`python -m tests.sandbox` starts the Kubernetes API emulator (`--seed sandbox`), makes a
throwaway CA and a serving certificate for 127.0.0.1/localhost, starts `cocoon-webhook` with
them (127.0.0.1:8443 and :9090, or free ports when those are taken) and registers the webhook
configurations of `knative/standalone` with `url` targets and that CA, so the emulator calls
the server exactly as a cluster's API server would, selectors and rules included. It prints
the kubeconfig and commands to try, and stops everything on Ctrl-C or SIGTERM. State lives in
`.sandbox/` (gitignored).

`--cluster real` puts a real control plane (tests/control_plane: kube-apiserver, etcd,
kube-controller-manager built from Go) in the emulator's place, given the same nodes, namespace
and CRD: there a Deployment really makes its pods (no kubelet runs them).

`--check` runs a short scripted session instead (a cocoon pod gets a VM name and a node, a
scale-down is denied, an invalid CocoonSet is denied, a second CocoonHibernation for one pod is
denied), prints OK and stops.

What other tests share with it (certificates, the server process, the webhook
configurations, the demo objects) lives in tests/helpers/.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests import prometheus
from tests.control_plane.build import ControlPlaneUnavailable
from tests.control_plane.launcher import ControlPlane, ControlPlaneFailed
from tests.control_plane.nodes import add_ready_node
from tests.helpers import KUBECTL, ROOT
from tests.helpers.demo import (
    DEMO_HASH,
    demo_deployment,
    demo_pod,
    hibernation,
    invalid_cocoonset,
)
from tests.helpers.server import START_TIMEOUT_S, Pki, ServerProcess, server_env
from tests.helpers.webhooks import register, webhook_configurations
from tests.kube_emulator import seed
from tests.kube_emulator.launcher import EmulatorProcess
from tests.prometheus import PROMETHEUS_PORT

SANDBOX_DIR = ROOT / ".sandbox"
WEBHOOK_PORT = 8443
METRICS_PORT = 9090
VM_NAME = "vm.cocoonstack.io/name"

# --- the sandbox -------------------------------------------------------------------------------


def _free(port: int) -> int:
    """`port` if it can be bound on 127.0.0.1 right now, else 0 (the server picks one)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


@dataclass
class Sandbox:
    directory: Path
    cluster: EmulatorProcess | ControlPlane
    pki: Pki
    server: ServerProcess
    webhook_port: int
    metrics_port: int

    @property
    def kubeconfig(self) -> str:
        # The emulator writes it here; a control plane's is copied here (`make reap` reads it).
        return str(self.directory / "sandbox.kubeconfig")

    @property
    def emulator(self) -> EmulatorProcess:
        """The emulator's own controls (audit log, faults): only on the emulator backend."""
        if not isinstance(self.cluster, EmulatorProcess):
            raise TypeError("this sandbox runs on a real control plane, not the emulator")
        return self.cluster

    @property
    def real(self) -> bool:
        return isinstance(self.cluster, ControlPlane)

    def cluster_exited(self) -> str | None:
        """Which part of the API server side exited on its own, if one did."""
        if isinstance(self.cluster, ControlPlane):
            dead = [p.name for p in self.cluster.processes if p.popen.poll() is not None]
            return dead[0] if dead else None
        process = self.cluster.process
        return "the API emulator" if process is not None and process.poll() is not None else None


CLUSTERS = ("emulator", "real")


def start_cluster(
    directory: Path, kind: str, apiserver_args: Sequence[str] = ()
) -> EmulatorProcess | ControlPlane:
    """The emulator with the sandbox seed, or a real control plane given the same objects
    (`apiserver_args`: more kube-apiserver flags, real control plane only)."""
    if kind == "emulator":
        if apiserver_args:
            raise ValueError("kube-apiserver flags need the real control plane")
        return EmulatorProcess.start(directory, seed="sandbox", name="sandbox")
    plane = ControlPlane.start(directory / "control-plane", extra_apiserver_args=apiserver_args)
    try:
        seed_real(plane.api_client())
        shutil.copyfile(plane.kubeconfig, directory / "sandbox.kubeconfig")
    except BaseException:
        plane.stop()
        raise
    return plane


def seed_real(api_client: Any) -> None:
    """The emulator's `sandbox` seed, created through a real API server."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": "cocoon-system"}})
    apiext = client.ApiextensionsV1Api(api_client)
    crds = (seed.COCOONSET_CRD, seed.COCOONHIBERNATION_CRD)
    for crd in crds:
        apiext.create_custom_resource_definition(crd)
    for node in seed.sandbox_nodes():
        add_ready_node(api_client, node)

    def established(name: str) -> bool:
        conditions = apiext.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    deadline = time.monotonic() + START_TIMEOUT_S
    for name in (crd["metadata"]["name"] for crd in crds):
        while not established(name):
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not established within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.1)


@contextlib.contextmanager
def sandbox(
    directory: Path = SANDBOX_DIR,
    *,
    echo: bool = False,
    preferred: tuple[int, int] = (WEBHOOK_PORT, METRICS_PORT),
    cluster: str = "emulator",
    apiserver_args: Sequence[str] = (),
    server_overrides: Mapping[str, str] | None = None,
) -> Iterator[Sandbox]:
    """API server (emulated or real), certificates, server and webhook registrations; all
    stopped on exit. `server_overrides`: more settings of the server's environment."""
    # Every file is overwritten, nothing else removed: --dir may name a directory in use.
    directory.mkdir(parents=True, exist_ok=True)
    api = start_cluster(directory, cluster, apiserver_args)
    server: ServerProcess | None = None
    try:
        pki = Pki.create(directory / "certs")
        webhook, metrics = (_free(port) for port in preferred)
        env = server_env(
            str(directory / "sandbox.kubeconfig"),
            pki,
            REAPER_INTERVAL="1m",
            LISTEN_ADDR=f"127.0.0.1:{webhook}",
            METRICS_ADDR=f"127.0.0.1:{metrics}",
            **(server_overrides or {}),
        )
        server = ServerProcess.start(env, echo=echo)
        webhook, metrics = server.wait_listening()
        configurations = webhook_configurations(webhook, pki.ca_file.read_bytes())
        register(api.api_client(), configurations)
        yield Sandbox(directory, api, pki, server, webhook, metrics)
    finally:
        if server is not None:
            server.stop()
        api.stop()


# --- what to try, and the scripted check -------------------------------------------------------


def write_examples(directory: Path) -> dict[str, Path]:
    files = {
        "deployment": directory / "demo-deployment.yaml",
        "pod": directory / "demo-pod.yaml",
        "cocoonset": directory / "bad-cocoonset.yaml",
        "hibernation": directory / "hibernation.yaml",
        "second-hibernation": directory / "second-hibernation.yaml",
    }
    files["deployment"].write_text(yaml.safe_dump(demo_deployment(), sort_keys=False))
    files["pod"].write_text(yaml.safe_dump(demo_pod(), sort_keys=False))
    files["cocoonset"].write_text(yaml.safe_dump(invalid_cocoonset(), sort_keys=False))
    files["hibernation"].write_text(yaml.safe_dump(hibernation("agent-0", "agent-0")))
    files["second-hibernation"].write_text(yaml.safe_dump(hibernation("nap-agent-0", "agent-0")))
    return files


def instructions(box: Sandbox) -> str:
    files = write_examples(box.directory)
    kubectl = f"{os.path.relpath(KUBECTL, Path.cwd())} --kubeconfig {box.kubeconfig}"
    plugin = (
        f"{os.path.relpath(KUBECTL.parent / 'kubectl-cocoon', Path.cwd())} "
        f"--kubeconfig {box.kubeconfig}"
    )
    columns = (
        "custom-columns=NAME:.metadata.name,VM:.metadata.annotations.vm\\.cocoonstack\\.io/name,"
        "NODE:.spec.nodeName"
    )
    if box.real:
        tries = [
            "Try (real controllers: the Deployment makes the pods; no kubelet runs them):",
            f"  {kubectl} apply -f {files['deployment']}",
            f"  {kubectl} get pods -o '{columns}'",
            f"  {kubectl} delete pod <name> --grace-period=0 --force   # replaced, same slot",
        ]
    else:
        tries = [
            "Try (the emulator runs no controllers: a Deployment makes no pods, so create them):",
            f"  {kubectl} apply --validate=false -f {files['deployment']}",
            f"  {kubectl} create --validate=false -f {files['pod']}    # twice: slots 0, 1",
            f"  {kubectl} get pods -o '{columns}'",
        ]
    kind = "real" if box.real else "emulated"
    return "\n".join(
        [
            "",
            "cocoon-webhook sandbox is up",
            f"  API server ({kind}){' ' * (10 - len(kind))}{box.cluster.url}",
            f"  kubeconfig             {box.kubeconfig}",
            f"  webhook (TLS)          https://127.0.0.1:{box.webhook_port}  CA {box.pki.ca_file}",
            f"  metrics                http://127.0.0.1:{box.metrics_port}/metrics",
            "  nodes                  cocoon-a, cocoon-b (pool default), gpu-1 (gpu), worker-1",
            "",
            *tries,
            f"  {kubectl} -n cocoon-system get configmap cocoon-affinity-default -o yaml",
            f"  {plugin} res -A    # kubectl cocoon (on PATH): the same, one row per VM",
            f"  {kubectl} scale deployment demo --replicas=1        # denied",
            f"  {kubectl} create --validate=false -f {files['cocoonset']}    # denied",
            f"  {kubectl} create --validate=false -f {files['hibernation']}",
            f"  {kubectl} create --validate=false -f {files['second-hibernation']}    # denied",
            f"  curl -s http://127.0.0.1:{box.metrics_port}/metrics | grep ^cocoon_webhook",
            f"  curl -s --cacert {box.pki.ca_file} https://127.0.0.1:{box.webhook_port}/readyz",
            "",
            "Server log lines follow. Ctrl-C stops everything.",
            "",
        ]
    )


class CheckFailed(AssertionError):
    pass


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)


def check(box: Sandbox) -> list[str]:
    """The scripted session; returns what it verified, raises CheckFailed on the first miss."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api_client = box.cluster.api_client()
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    done: list[str] = []

    apps.create_namespaced_deployment("default", demo_deployment(replicas=2))
    if box.real:  # the ReplicaSet controller makes the pods
        pods = _wait_for_pods(core, "app=demo", 2)
    else:
        pods = [core.create_namespaced_pod("default", demo_pod()) for _ in range(2)]
    placed = [
        (pod.metadata.name, (pod.metadata.annotations or {}).get(VM_NAME), pod.spec.node_name)
        for pod in pods
    ]
    vm_names = sorted(vm for _, vm, _ in placed)
    _expect(vm_names == ["vk-default-demo-0", "vk-default-demo-1"], f"pods got VM names {vm_names}")
    _expect(
        all(node in ("cocoon-a", "cocoon-b") for _, _, node in placed),
        f"pods placed on {[node for _, _, node in placed]}",
    )
    prefix = "demo-" if box.real else f"demo-{DEMO_HASH}-"
    _expect(
        all(name.startswith(prefix) for name, _, _ in placed),
        f"pods named {[name for name, _, _ in placed]}",
    )
    done += [f"pod {name}: {vm} on {node}" for name, vm, node in placed]

    denials = [
        (
            "deployment replicas 2 -> 1",
            lambda: apps.patch_namespaced_deployment("demo", "default", {"spec": {"replicas": 1}}),
        ),
        (
            "scale 2 -> 1",
            lambda: apps.patch_namespaced_deployment_scale(
                "demo", "default", {"spec": {"replicas": 1}}
            ),
        ),
        (
            "invalid CocoonSet",
            lambda: custom.create_namespaced_custom_object(
                "cocoonset.cocoonstack.io", "v1", "default", "cocoonsets", invalid_cocoonset()
            ),
        ),
    ]
    # One CocoonHibernation per pod: the first is stored, a second for the same pod is not,
    # whether it is named after the pod or not.
    pod_name = placed[0][0]
    create_hibernation = functools.partial(
        custom.create_namespaced_custom_object,
        "cocoonset.cocoonstack.io", "v1", "default", "cocoonhibernations",
    )  # fmt: skip
    create_hibernation(hibernation(pod_name, pod_name))
    done.append(f"CocoonHibernation {pod_name}: created")
    denials += [
        ("misnamed CocoonHibernation",
         functools.partial(create_hibernation, hibernation(f"nap-{pod_name}", pod_name))),
        ("second CocoonHibernation",
         functools.partial(create_hibernation, hibernation(pod_name, pod_name))),
    ]  # fmt: skip
    for what, attempt in denials:
        try:
            attempt()
        except ApiException as exc:
            message = json.loads(exc.body or "{}").get("message", "")
            _expect(
                exc.status == 403 and "denied the request: cocoon-webhook: " in message,
                f"{what}: {exc.status} {message}",
            )
            done.append(f"{what}: denied ({message.split('denied the request: ')[1][:60]}…)")
        else:
            raise CheckFailed(f"{what}: allowed")
    replicas = apps.read_namespaced_deployment("demo", "default").spec.replicas
    _expect(replicas == 2, f"deployment has {replicas} replicas after the denials")
    return done


def _wait_for_pods(core: Any, selector: str, count: int) -> list[Any]:
    deadline = time.monotonic() + 60
    while True:
        pods = core.list_namespaced_pod("default", label_selector=selector).items
        if len(pods) >= count:
            return list(pods)
        if time.monotonic() > deadline:
            raise CheckFailed(f"{len(pods)} of {count} pods after 60 s")
        time.sleep(0.2)


# --- entry point --------------------------------------------------------------------------------


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _watch(box: Sandbox) -> None:
    """Until Ctrl-C or SIGTERM (KeyboardInterrupt), or until a child dies on its own."""
    try:
        while True:
            time.sleep(0.5)
            if box.server.process.poll() is not None:
                print(
                    f"cocoon-webhook exited with {box.server.process.returncode}", file=sys.stderr
                )
                return
            if exited := box.cluster_exited():
                print(f"{exited} exited", file=sys.stderr)
                return
    except KeyboardInterrupt:
        print("\nstopping the sandbox", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.sandbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check", action="store_true", help="run the scripted check, print OK and stop"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=SANDBOX_DIR,
        help="where the kubeconfig, certificates and examples go",
    )
    parser.add_argument(
        "--prometheus",
        action="store_true",
        help=f"also run a Prometheus server (Debian package `prometheus`) on "
        f"127.0.0.1:{PROMETHEUS_PORT} scraping the webhook, with knative/monitoring's alerts",
    )
    parser.add_argument(
        "--cluster",
        choices=CLUSTERS,
        default="emulator",
        help="the API emulator (default), or a real control plane built from Go (`real`)",
    )
    args = parser.parse_args(argv)
    if args.prometheus and prometheus.binary("prometheus") is None:
        print("prometheus not found: install the Debian package `prometheus`", file=sys.stderr)
        return 1
    # SIGTERM unwinds like Ctrl-C, so the context manager stops what it started either way.
    # SIGINT is set too: a shell starts background jobs with it ignored, and Python then keeps
    # it ignored instead of raising KeyboardInterrupt.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        return _run(args)
    except (ControlPlaneUnavailable, ControlPlaneFailed) as exc:
        print(exc, file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.check:
        started = time.monotonic()
        with sandbox(args.dir, preferred=(0, 0), cluster=args.cluster) as box:
            print(
                f"  api {box.cluster.url} webhook https://127.0.0.1:{box.webhook_port} "
                f"metrics http://127.0.0.1:{box.metrics_port}"
            )
            try:
                verified = check(box)
            except CheckFailed as exc:
                print("\n".join(box.server.output[-20:]), file=sys.stderr)
                print(f"FAILED: {exc}", file=sys.stderr)
                return 1
            if box.server.stop() != 0:
                print("\n".join(box.server.output[-20:]), file=sys.stderr)
                print("FAILED: the server did not exit 0 on SIGTERM", file=sys.stderr)
                return 1
        for line in verified:
            print(f"  {line}")
        print(f"OK ({time.monotonic() - started:.1f}s)")
        return 0
    try:
        with (
            sandbox(args.dir, echo=True, cluster=args.cluster) as box,
            contextlib.ExitStack() as extras,
        ):
            print(instructions(box), flush=True)
            if args.prometheus:
                server = prometheus.PrometheusProcess.start(
                    args.dir / "prometheus", [f"127.0.0.1:{box.metrics_port}"]
                )
                extras.callback(server.stop)
                print(
                    f"Prometheus (alerts loaded, scraping the webhook every 5s): {server.url}\n"
                    f"  e.g. {server.url}/graph?g0.expr=cocoon_webhook_admission_total",
                    flush=True,
                )
            _watch(box)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
