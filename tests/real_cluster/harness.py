"""What the tests against the real control plane share: seeding a cluster that has no kubelet,
our RBAC and ServiceAccount credentials, the webhook servers behind a Service-like front, and
waiting for conditions.

The webhooks are the standalone server (`common/server.py`) in three processes behind
`RoundRobinProxy`, registered with the webhook configurations of `knative/standalone/` turned
into `url:` targets with a throwaway CA (`tests.helpers.webhooks.webhook_configurations`).
They talk to the API server with the `cocoon-system/cocoon-webhook` ServiceAccount's own
token, so every call they make is judged by the RBAC of the install.
"""

from __future__ import annotations

import contextlib
import copy
import json
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from tests.conformance.helpers import wait_for
from tests.control_plane.nodes import add_ready_node
from tests.helpers import KUBECTL
from tests.helpers.demo import demo_deployment
from tests.helpers.server import Pki, ServerProcess, server_env
from tests.helpers.webhooks import register, webhook_configurations
from tests.kube_emulator.seed import COCOONHIBERNATION_CRD, COCOONSET_CRD, node
from tests.real_cluster.proxy import RoundRobinProxy
from tests.test_manifests import KNATIVE, kustomize

AFFINITY_NAMESPACE = "cocoon-system"
AFFINITY_CONFIGMAP = "cocoon-affinity-default"
ACCOUNT = "cocoon-webhook"
VM_NAME = "vm.cocoonstack.io/name"
POOL_NODES = ("cocoon-a", "cocoon-b")
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
CONFIGURATIONS = {
    "MutatingWebhookConfiguration": "cocoon-webhook-mutate",
    "ValidatingWebhookConfiguration": "cocoon-webhook-validate",
}
PROBE_NAMESPACE = "e2e-probe"
# API Priority and Fairness classifies every request by its user before anything else; a
# FlowSchema of the webhook's own ServiceAccount makes the API server count exactly its requests
# (apiserver_request_total has no user label, and the controllers' requests would mix in).
FLOW_SCHEMA: dict[str, Any] = {
    "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
    "kind": "FlowSchema",
    "metadata": {"name": "cocoon-webhook-requests"},
    "spec": {
        "priorityLevelConfiguration": {"name": "workload-low"},
        "matchingPrecedence": 1000,
        "distinguisherMethod": {"type": "ByUser"},
        "rules": [{
            "subjects": [{"kind": "ServiceAccount",
                          "serviceAccount": {"name": ACCOUNT, "namespace": AFFINITY_NAMESPACE}}],
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                               "namespaces": ["*"], "clusterScope": True}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
        }],
    },
}  # fmt: skip
# Short, so a test can wait out a claim (a replacement pod must find its slot free); still
# longer than the webhook timeout, so a claim outlives any admission still storing its pod.
INFLIGHT_WINDOW_S = 6.0
WAIT_S = 120.0


def run_kubectl(
    kubeconfig: str | Path, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done


# --- cluster state --------------------------------------------------------------------------


@dataclass
class Apis:
    client: Any

    @property
    def core(self) -> Any:
        return kubernetes.client.CoreV1Api(self.client)

    @property
    def apps(self) -> Any:
        return kubernetes.client.AppsV1Api(self.client)

    @property
    def custom(self) -> Any:
        return kubernetes.client.CustomObjectsApi(self.client)

    @property
    def admission(self) -> Any:
        return kubernetes.client.AdmissionregistrationV1Api(self.client)

    @property
    def extensions(self) -> Any:
        return kubernetes.client.ApiextensionsV1Api(self.client)


def _exists_ok(create: Callable[[], Any]) -> None:
    try:
        create()
    except ApiException as exc:
        if exc.status != 409:
            raise


def ensure_namespace(apis: Apis, name: str) -> str:
    """The namespace, once its `default` ServiceAccount exists (pods need it to be admitted)."""
    _exists_ok(lambda: apis.core.create_namespace({"metadata": {"name": name}}))

    def has_account() -> bool:
        accounts = apis.core.list_namespaced_service_account(name).items
        return any(account.metadata.name == "default" for account in accounts)

    wait_for(has_account, f"ServiceAccount {name}/default")
    return name


def add_pool_node(apis: Apis, name: str, pool: str = "default") -> None:
    """A Ready cocoon node without a kubelet (kept from an earlier module if it exists)."""
    _exists_ok(lambda: add_ready_node(apis.client, node(name, pool, tainted=True)))


def install_cocoon_crds(apis: Apis) -> None:
    """Our CocoonSet and CocoonHibernation CRDs, Established."""
    for crd in (COCOONSET_CRD, COCOONHIBERNATION_CRD):
        _exists_ok(lambda crd=crd: apis.extensions.create_custom_resource_definition(crd))
        name = crd["metadata"]["name"]

        def established(name: str = name) -> bool:
            conditions = apis.extensions.read_custom_resource_definition(name).status.conditions
            return any(c.type == "Established" and c.status == "True" for c in conditions or [])

        wait_for(established, f"CRD {name} Established")


def install_objects(kind_filter: tuple[str, ...]) -> list[dict[str, Any]]:
    """The objects of both installs whose kind is in `kind_filter`, each once."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in (KNATIVE, KNATIVE / "standalone"):
        for obj in kustomize(path):
            if obj["kind"] in kind_filter:
                meta = obj["metadata"]
                seen[obj["kind"], meta.get("namespace", ""), meta["name"]] = obj
    return list(seen.values())


def apply(kubeconfig: str | Path, objects: list[dict[str, Any]], *extra: str) -> str:
    stdin = yaml.safe_dump_all(objects, sort_keys=False)
    return run_kubectl(kubeconfig, "apply", *extra, "-f", "-", stdin=stdin).stdout


def count_webhook_requests(apis: Apis, kubeconfig: str | Path) -> None:
    """Install FLOW_SCHEMA and wait until the API server classifies by it."""
    apply(kubeconfig, [FLOW_SCHEMA])
    name = FLOW_SCHEMA["metadata"]["name"]

    def digested() -> bool:
        schema = kubernetes.client.FlowcontrolApiserverV1Api(apis.client).read_flow_schema(name)
        conditions = schema.status.conditions if schema.status else None
        return any(c.type == "Dangling" and c.status == "False" for c in conditions or [])

    wait_for(digested, f"FlowSchema {name} in use")


def webhook_request_total(metrics_text: str) -> float:
    """Requests the API server dispatched for the webhook's ServiceAccount (FLOW_SCHEMA)."""
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "apiserver_flowcontrol_dispatched_requests":
            return sum(
                sample.value
                for sample in family.samples
                if sample.name.endswith("_total")
                and sample.labels.get("flow_schema") == FLOW_SCHEMA["metadata"]["name"]
            )
    return 0.0


def token_kubeconfig(
    apis: Apis, server: str, ca_file: Path, namespace: str, account: str, path: Path
) -> Path:
    """A kubeconfig carrying a TokenRequest token of `namespace/account`: its own credentials."""
    request = {"spec": {"expirationSeconds": 3600}}
    token = apis.core.create_namespaced_service_account_token(account, namespace, request)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "real", "cluster": {"server": server,
                                                    "certificate-authority": str(ca_file)}}],
        "users": [{"name": account, "user": {"token": token.status.token}}],
        "contexts": [{"name": account, "context": {"cluster": "real", "user": account}}],
        "current-context": account,
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


# --- reading state --------------------------------------------------------------------------


def _affinity_configmap(apis: Apis) -> Any | None:
    try:
        return apis.core.read_namespaced_config_map(AFFINITY_CONFIGMAP, AFFINITY_NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def affinity_entries(apis: Apis, namespace: str | None = None) -> dict[str, dict[str, Any]]:
    """The affinity ConfigMap's entries, decoded; only `namespace`'s when given."""
    configmap = _affinity_configmap(apis)
    data = (configmap.data if configmap else None) or {}
    entries = {key: json.loads(value) for key, value in data.items()}
    return {
        key: entry
        for key, entry in entries.items()
        if namespace is None or entry.get("namespace") == namespace
    }


def affinity_version(apis: Apis) -> str:
    """The affinity ConfigMap's resourceVersion, "" while it does not exist."""
    configmap = _affinity_configmap(apis)
    return str(configmap.metadata.resource_version) if configmap else ""


def pods_of(apis: Apis, namespace: str) -> list[Any]:
    return list(apis.core.list_namespaced_pod(namespace).items)


def vm_name(pod: Any) -> str | None:
    return (pod.metadata.annotations or {}).get(VM_NAME)


def request_counts(metrics_text: str) -> dict[tuple[str, ...], float]:
    """apiserver_request_total by (verb, resource, subresource, code, dry_run)."""
    counts: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            labels = sample.labels
            key = tuple(labels.get(k, "") for k in ("verb", "resource", "subresource", "code",
                                                     "dry_run"))  # fmt: skip
            counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def counts_delta(
    before: dict[tuple[str, ...], float], after: dict[tuple[str, ...], float]
) -> dict[tuple[str, ...], float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


# --- workloads ------------------------------------------------------------------------------


def cocoon_deployment(namespace: str, name: str = "demo", replicas: int = 5) -> dict[str, Any]:
    deployment = copy.deepcopy(demo_deployment(replicas))
    deployment["metadata"] = {"name": name, "namespace": namespace}
    labels = {"app": name}
    deployment["spec"]["selector"] = {"matchLabels": labels}
    deployment["spec"]["template"]["metadata"] = {"labels": labels}
    return deployment


def plain_deployment(namespace: str, name: str, replicas: int) -> dict[str, Any]:
    deployment = cocoon_deployment(namespace, name, replicas)
    deployment["spec"]["template"]["spec"].pop("tolerations")
    return deployment


def cocoon_pod(namespace: str, name: str) -> dict[str, Any]:
    pod = cocoon_deployment(namespace)["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace}, "spec": pod["spec"]}  # fmt: skip


def force_delete_all_pods(apis: Apis, namespace: str) -> None:
    """Delete every pod at once: without a kubelet, a graceful delete never completes."""
    for pod in pods_of(apis, namespace):
        with contextlib.suppress(ApiException):
            apis.core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)


def reap_tick(reap: Any) -> dict[str, Any]:
    """One sweep through the reap function, as the CronJob's CloudEvent asks for it."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": f"e2e-{time.monotonic_ns()}",
        "ce-source": "tests/real_cluster",
        "ce-type": "io.cocoonstack.webhook.reap",
        "content-type": "application/json",
    }
    reply = reap.post("/", content=b"{}", headers=headers)
    assert reply.status_code == 200, reply.text
    summary: dict[str, Any] = reply.json()
    return summary


# --- the webhook servers --------------------------------------------------------------------


@dataclass
class Webhooks:
    """Three standalone servers behind one front, and the configurations pointing at it."""

    admin: Apis
    pki: Pki
    env: dict[str, str]
    proxy: RoundRobinProxy
    servers: list[ServerProcess] = field(default_factory=list)
    metrics_ports: list[int] = field(default_factory=list)

    def start_servers(self, count: int) -> None:
        webhook_ports = []
        for _ in range(count):
            server = ServerProcess.start(self.env)
            self.servers.append(server)
        for server in self.servers:
            webhook, metrics = server.wait_listening()
            webhook_ports.append(webhook)
            self.metrics_ports.append(metrics)
        self.proxy.backends = webhook_ports

    def stop_servers(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()
        self.metrics_ports.clear()
        self.proxy.backends = []

    def metric(self, name: str, **labels: str) -> list[float]:
        """The sum of `name`'s samples matching `labels`, per server."""
        sums = []
        for port in self.metrics_ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
                text = reply.read().decode()
            total = 0.0
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == name and all(
                        sample.labels.get(k) == v for k, v in labels.items()
                    ):
                        total += sample.value
            sums.append(total)
        return sums


def _mutate_active(admin: Apis) -> bool:
    probe = cocoon_pod(PROBE_NAMESPACE, "probe")
    pod = admin.core.create_namespaced_pod(PROBE_NAMESPACE, probe, dry_run="All")
    return vm_name(pod) is not None


def _validate_active(admin: Apis) -> bool:
    try:
        admin.apps.patch_namespaced_deployment(
            "probe", PROBE_NAMESPACE, {"spec": {"replicas": 0}}, dry_run="All"
        )
    except ApiException as exc:
        if exc.status == 403 and "scale-down blocked" in (exc.body or ""):
            return True
        raise
    return False


def _prepare_probes(admin: Apis) -> None:
    ensure_namespace(admin, PROBE_NAMESPACE)
    # Paused: its controller makes no ReplicaSet, so the probe costs no pod and no reservation.
    probe = cocoon_deployment(PROBE_NAMESPACE, "probe", replicas=1)
    probe["spec"]["paused"] = True
    _exists_ok(lambda: admin.apps.create_namespaced_deployment(PROBE_NAMESPACE, probe))


def unregister(admin: Apis) -> None:
    for kind, name in CONFIGURATIONS.items():
        delete = (
            admin.admission.delete_mutating_webhook_configuration
            if kind == "MutatingWebhookConfiguration"
            else admin.admission.delete_validating_webhook_configuration
        )
        with contextlib.suppress(ApiException):
            delete(name)


@contextlib.contextmanager
def running_webhooks(
    admin: Apis, directory: Path, kubeconfig: Path, *, replicas: int = 3, **env: str
) -> Iterator[Webhooks]:
    """Servers, front and configurations; waits until the API server calls them, and on exit
    until it no longer does, so no other suite meets a configuration pointing at nothing."""
    _prepare_probes(admin)
    pki = Pki.create(directory / "certs")
    settings = server_env(
        str(kubeconfig),
        pki,
        AFFINITY_INFLIGHT_WINDOW=f"{INFLIGHT_WINDOW_S:g}s",
        # The loop sweeps once at start; the reaper is exercised through the reap function.
        REAPER_INTERVAL="1h",
        # A 2-core machine also runs the control plane: more of the 5 s webhook timeout.
        MUTATE_DEADLINE="4500ms",
        **env,
    )
    with RoundRobinProxy() as proxy:
        hooks = Webhooks(admin, pki, settings, proxy)
        try:
            hooks.start_servers(replicas)
            register(admin.client, webhook_configurations(proxy.port, pki.ca_file.read_bytes()))
            wait_for(lambda: _mutate_active(admin), "the mutating webhook to be called")
            wait_for(lambda: _validate_active(admin), "the validating webhook to be called")
            yield hooks
        finally:
            unregister(admin)
            if hooks.servers:
                wait_for(lambda: not _mutate_active(admin), "the mutating webhook to be gone")
                wait_for(lambda: not _validate_active(admin), "the validating webhook to be gone")
            hooks.stop_servers()
