"""Client certificates (`CLIENT_CA`) between a real kube-apiserver and the standalone server.

kube-apiserver presents a client certificate to a webhook only through its admission
configuration; the one used here is docs/deploy.md's snippet, with only its file paths and the
user entry's name (the webhook's host: here the `url` target's `127.0.0.1:<port>` instead of
the install's Service) changed. Without it, the server refuses every review and each webhook's
failure policy decides: mutate (Ignore) lets the pod in unpatched, validate (Fail) refuses the
scale-down.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.control_plane.launcher import ControlPlane
from tests.helpers import ROOT
from tests.helpers.demo import demo_deployment
from tests.pki import issue, make_ca
from tests.real_cluster.harness import cocoon_pod, vm_name
from tests.sandbox import Sandbox, sandbox

pytestmark = pytest.mark.control_plane

DOC_DIR = "/etc/kubernetes/admission/"
DOC_USER = "cocoon-webhook.cocoon-system.svc"  # the install's Service target, on port 443
SCALE_DOWN = {"spec": {"replicas": 1}}


def documented_admission_config() -> tuple[dict[str, Any], dict[str, Any]]:
    """The AdmissionConfiguration and webhook kubeconfig of docs/deploy.md, as written there."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    [snippet] = [block for block in blocks if "kind: AdmissionConfiguration" in block]
    admission, kubeconfig = yaml.safe_load_all(snippet)
    return admission, kubeconfig


def write_admission_config(directory: Path, host: str, ca_dir: Path) -> Path:
    """docs/deploy.md's two files under `directory`, the user entry renamed to `host`;
    the client pair it names is signed by the CA written to `ca_dir/client-ca.crt`."""
    admission, kubeconfig = documented_admission_config()
    directory.mkdir(parents=True, exist_ok=True)
    [user] = kubeconfig["users"]
    assert user["name"] == DOC_USER
    user["name"] = host

    def moved(path: str) -> Path:
        assert path.startswith(DOC_DIR), path
        return directory / path.removeprefix(DOC_DIR)

    assert set(user["user"]) == {"client-certificate", "client-key"}
    certificate, key = (moved(user["user"][k]) for k in ("client-certificate", "client-key"))
    user["user"] = {"client-certificate": str(certificate), "client-key": str(key)}
    ca = make_ca("kube-apiserver webhook clients")
    ca_dir.mkdir(parents=True, exist_ok=True)
    (ca_dir / "client-ca.crt").write_bytes(ca.cert_pem)
    pair = issue(ca, "kube-apiserver", client=True)
    certificate.write_bytes(pair.cert_pem)
    key.write_bytes(pair.key_pem)

    kubeconfig_files = {
        plugin["configuration"]["kubeConfigFile"] for plugin in admission["plugins"]
    }
    assert {p["name"] for p in admission["plugins"]} == {
        "ValidatingAdmissionWebhook",
        "MutatingAdmissionWebhook",
    }
    [kubeconfig_file] = kubeconfig_files
    for plugin in admission["plugins"]:
        plugin["configuration"]["kubeConfigFile"] = str(moved(kubeconfig_file))
    moved(kubeconfig_file).write_text(yaml.safe_dump(kubeconfig))
    path = directory / "admission-config.yaml"
    path.write_text(yaml.safe_dump(admission))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def with_certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """kube-apiserver configured with a client certificate for the server's host and port."""
    directory = tmp_path_factory.mktemp("client-auth")
    # The user entry names the webhook's port, so the server's port is chosen first.
    port = free_port()
    config = write_admission_config(directory / "admission", f"127.0.0.1:{port}", directory)
    with sandbox(
        directory,
        preferred=(port, 0),
        cluster="real",
        apiserver_args=[f"--admission-control-config-file={config}"],
        server_overrides={"CLIENT_CA": str(directory / "client-ca.crt")},
    ) as box:
        assert box.webhook_port == port, f"port {port} was taken before the server bound it"
        yield box


@pytest.fixture(scope="module")
def without_certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The same server setting, kube-apiserver without an admission configuration."""
    directory = tmp_path_factory.mktemp("no-client-auth")
    make_ca("unused").write(directory, "client-ca")
    with sandbox(
        directory,
        preferred=(0, 0),
        cluster="real",
        server_overrides={"CLIENT_CA": str(directory / "client-ca.crt")},
    ) as box:
        yield box


def fail_open_count(box: Sandbox, webhook: str) -> float:
    assert isinstance(box.cluster, ControlPlane)
    pattern = re.compile(
        r'^apiserver_admission_webhook_fail_open_count\{[^}]*name="'
        + re.escape(webhook)
        + r'"[^}]*\} (\S+)$',
        re.MULTILINE,
    )
    return sum(float(value) for value in pattern.findall(box.cluster.metrics_text()))


def apis(box: Sandbox) -> tuple[client.CoreV1Api, client.AppsV1Api]:
    api_client = box.cluster.api_client()
    return client.CoreV1Api(api_client), client.AppsV1Api(api_client)


def test_apiserver_with_the_documented_certificate_is_served(with_certificate: Sandbox) -> None:
    core, apps = apis(with_certificate)
    pod = core.create_namespaced_pod("default", cocoon_pod("default", "solo"))
    assert vm_name(pod) == "vk-default-solo"
    assert pod.spec.node_name in ("cocoon-a", "cocoon-b")

    apps.create_namespaced_deployment("default", demo_deployment(replicas=3))
    with pytest.raises(ApiException) as refused:
        apps.patch_namespaced_deployment("demo", "default", SCALE_DOWN)
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert "denied the request: cocoon-webhook: scale-down blocked" in message


def test_apiserver_without_a_certificate_is_refused_and_failure_policies_apply(
    without_certificate: Sandbox,
) -> None:
    core, apps = apis(without_certificate)
    pod = core.create_namespaced_pod("default", cocoon_pod("default", "solo"))
    assert vm_name(pod) is None
    assert not pod.spec.node_name
    # Called and refused, not skipped: kube-apiserver counts the failure it ignored.
    assert fail_open_count(without_certificate, "pods.mutate.cocoonstack.io") == 1

    apps.create_namespaced_deployment("default", demo_deployment(replicas=3))
    with pytest.raises(ApiException) as refused:
        apps.patch_namespaced_deployment("demo", "default", SCALE_DOWN)
    assert refused.value.status == 500
    message = json.loads(refused.value.body)["message"]
    assert 'failed calling webhook "workloads.validate.cocoonstack.io"' in message
    assert message.endswith(
        "failed to call webhook: client certificate required (CLIENT_CA is set)"
    )
    assert apps.read_namespaced_deployment("demo", "default").spec.replicas == 3
