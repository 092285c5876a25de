"""End to end through the emulator's admission chain, with production's webhook configurations
(built from knative/standalone) pointing at the standalone server over verified TLS.

What only this layer can show: pods created through the API with `generateName` are stored with
their VM names and nodes, the namespace exclusions keep the system namespaces working even
when the webhook is down (no self-lockout, SPEC 12.3 / B11), and the matchConditions (evaluated
by the emulator with a real CEL runtime) keep everything but cocoon scale-downs away from the
webhook, so that its outage blocks nothing else (docs/operations.md).
"""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from cryptography import x509
from kubernetes.client.exceptions import ApiException

from tests.helpers.demo import demo_deployment, demo_pod, hibernation
from tests.sandbox import Sandbox, sandbox

VM_NAME = "vm.cocoonstack.io/name"
SYSTEM_NAMESPACES = ("kube-system", "cocoon-system", "kube-public", "knative-serving")


def admissions(box: Sandbox, handler: str) -> float:
    url = f"http://127.0.0.1:{box.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    prefix = 'cocoon_webhook_admission_total{decision="'
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and f'handler="{handler}"' in line
    )


def served_serial(port: int) -> int:
    """The serial of the certificate a new connection is served (unverified: it may be expired)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def pod_in(namespace: str) -> dict[str, Any]:
    pod = copy.deepcopy(demo_pod())
    pod["metadata"]["namespace"] = namespace
    return pod


def ensure_namespaces(core: Any) -> None:
    existing = {ns.metadata.name for ns in core.list_namespace().items}
    for name in SYSTEM_NAMESPACES:
        if name not in existing:
            core.create_namespace({"metadata": {"name": name}})


@contextlib.contextmanager
def clients(directory: Path) -> Iterator[tuple[Sandbox, Any, Any]]:
    """A sandbox of its own (its server may be stopped) with core and apps clients."""
    with sandbox(directory, preferred=(0, 0)) as own:
        api_client = own.emulator.api_client()
        yield own, kubernetes.client.CoreV1Api(api_client), kubernetes.client.AppsV1Api(api_client)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with sandbox(tmp_path_factory.mktemp("e2e"), preferred=(0, 0)) as running:
        yield running


@pytest.fixture
def core(box: Sandbox) -> Any:
    api = kubernetes.client.CoreV1Api(box.cluster.api_client())
    ensure_namespaces(api)
    return api


def test_generate_name_pods_are_stored_with_vm_names_and_nodes(core: Any) -> None:
    created = [core.create_namespaced_pod("default", pod_in("default")) for _ in range(3)]
    stored = [core.read_namespaced_pod(p.metadata.name, "default") for p in created]
    assert all(p.metadata.name.startswith("demo-5d8c7b9f6-") for p in stored)
    assert len({p.metadata.name for p in stored}) == 3
    vm_names = sorted(p.metadata.annotations[VM_NAME] for p in stored)
    assert vm_names[:3] == ["vk-default-demo-0", "vk-default-demo-1", "vk-default-demo-2"]
    assert {p.spec.node_name for p in stored} <= {"cocoon-a", "cocoon-b"}
    assert all(p.spec.node_name for p in stored)


@pytest.mark.parametrize("namespace", SYSTEM_NAMESPACES)
def test_system_namespaces_are_never_sent_to_the_webhook(
    box: Sandbox, core: Any, namespace: str
) -> None:
    before = admissions(box, "mutate")
    pod = core.create_namespaced_pod(namespace, pod_in(namespace))
    assert VM_NAME not in (pod.metadata.annotations or {})
    assert not pod.spec.node_name
    assert admissions(box, "mutate") == before


def test_other_namespaces_are(box: Sandbox, core: Any) -> None:
    core.create_namespace({"metadata": {"name": "team-a"}})
    before = admissions(box, "mutate")
    pod = core.create_namespaced_pod("team-a", pod_in("team-a"))
    assert pod.metadata.annotations[VM_NAME] == "vk-team-a-demo-0"
    assert admissions(box, "mutate") == before + 1


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        pytest.param(
            ("nap", "agent-0"),
            'metadata.name "nap" must equal spec.podRef.name "agent-0"',
            id="misnamed",
        ),
        pytest.param(
            ("agent-0", "agent-0"),
            'pod "agent-0" already has a live CocoonHibernation "agent-0"',
            id="same-pod",
        ),
    ],
)
def test_one_cocoonhibernation_per_pod(
    box: Sandbox, core: Any, second: tuple[str, str], reason: str
) -> None:
    namespace = f"hib-{second[0]}"
    core.create_namespace({"metadata": {"name": namespace}})
    custom = kubernetes.client.CustomObjectsApi(box.emulator.api_client())

    def create(obj: dict[str, Any]) -> Any:
        return custom.create_namespaced_custom_object(
            "cocoonset.cocoonstack.io", "v1", namespace, "cocoonhibernations", obj
        )

    before = admissions(box, "validate_cocoonhibernation")
    create(hibernation("agent-0", "agent-0", namespace))
    with pytest.raises(ApiException) as denied:
        create(hibernation(*second, namespace))
    assert denied.value.status == 403
    message = json.loads(denied.value.body)["message"]
    assert message.startswith(
        'admission webhook "cocoonhibernations.validate.cocoonstack.io" denied the request: '
        f"cocoon-webhook: {reason}"
    )
    assert admissions(box, "validate_cocoonhibernation") == before + 2
    # SPEC 4's deny reply is exactly uid, allowed and status: no audit annotation (issue 14
    # asks for the reason on validate's denials only).
    assert audited(box, "cocoonhibernations", namespace, second[0]) == {}


def test_cocoonhibernations_of_system_namespaces_are_not_sent(box: Sandbox, core: Any) -> None:
    custom = kubernetes.client.CustomObjectsApi(box.emulator.api_client())
    before = admissions(box, "validate_cocoonhibernation")
    custom.create_namespaced_custom_object(
        "cocoonset.cocoonstack.io", "v1", "cocoon-system", "cocoonhibernations",
        hibernation("nap", "agent-0", "cocoon-system"),
    )  # fmt: skip
    assert admissions(box, "validate_cocoonhibernation") == before


def test_webhook_down_locks_out_no_system_namespace(tmp_path: Path) -> None:
    with clients(tmp_path) as (down, core, apps):
        ensure_namespaces(core)
        for namespace in ("default", "kube-system"):
            deployment = demo_deployment(replicas=3)
            deployment["metadata"]["namespace"] = namespace
            apps.create_namespaced_deployment(namespace, deployment)
        assert down.server.stop() == 0

        # mutate fails open (Ignore): pods still start everywhere, unpatched.
        pod = core.create_namespaced_pod("default", pod_in("default"))
        assert VM_NAME not in (pod.metadata.annotations or {})
        # validate fails closed (Fail), but only where it applies: not in kube-system.
        scale_down = {"spec": {"replicas": 1}}
        apps.patch_namespaced_deployment("demo", "kube-system", scale_down)
        with pytest.raises(ApiException) as refused:
            apps.patch_namespaced_deployment("demo", "default", scale_down)
        assert refused.value.status == 500
        message = json.loads(refused.value.body)["message"]
        assert 'failed calling webhook "workloads.validate.cocoonstack.io"' in message

        # validate_cocoonhibernation fails closed as well, with the same exclusions.
        custom = kubernetes.client.CustomObjectsApi(down.emulator.api_client())
        group = ("cocoonset.cocoonstack.io", "v1")
        custom.create_namespaced_custom_object(
            *group, "kube-system", "cocoonhibernations", hibernation("a", "a", "kube-system")
        )
        with pytest.raises(ApiException) as refused:
            custom.create_namespaced_custom_object(
                *group, "default", "cocoonhibernations", hibernation("agent-0", "agent-0")
            )
        assert refused.value.status == 500
        message = json.loads(refused.value.body)["message"]
        assert 'failed calling webhook "cocoonhibernations.validate.cocoonstack.io"' in message


def audited(box: Sandbox, resource: str, namespace: str, name: str) -> dict[str, str]:
    """The audit annotations the API server filed for the last admitted write of one object."""
    events = [
        e
        for e in box.emulator.audit()
        if (e["resource"], e["namespace"], e["name"]) == (resource, namespace, name)
    ]
    assert events, f"no audit event for {resource} {namespace}/{name}"
    annotations: dict[str, str] = events[-1]["annotations"]
    return annotations


def test_placements_reach_the_audit_log_under_the_webhook_name(box: Sandbox, core: Any) -> None:
    core.create_namespace({"metadata": {"name": "audit-m"}})
    pod = core.create_namespaced_pod("audit-m", pod_in("audit-m"))
    assert audited(box, "pods", "audit-m", pod.metadata.name) == {
        "pods.mutate.cocoonstack.io/vm-name": "vk-audit-m-demo-0",
        "pods.mutate.cocoonstack.io/pool": "default",
        "pods.mutate.cocoonstack.io/key": "audit-m.demo.0",
        "pods.mutate.cocoonstack.io/slot": "0",
        "pods.mutate.cocoonstack.io/node": pod.spec.node_name,
    }

    # Failing open: the pod runs without a VM name, and the audit log says why.
    odd = pod_in("audit-m")
    del odd["metadata"]["generateName"]
    odd["metadata"]["name"] = "odd"
    odd["metadata"]["annotations"] = {"cocoonstack.io/pool": "no such/pool"}
    unplaced = core.create_namespaced_pod("audit-m", odd)
    assert VM_NAME not in unplaced.metadata.annotations
    assert audited(box, "pods", "audit-m", unplaced.metadata.name) == {
        "pods.mutate.cocoonstack.io/reason": "invalid pool 'no such/pool'"
    }


def test_denials_reach_the_audit_log_with_their_reason(box: Sandbox, core: Any) -> None:
    core.create_namespace({"metadata": {"name": "audit-v"}})
    apps = kubernetes.client.AppsV1Api(box.emulator.api_client())
    deployment = demo_deployment(replicas=3)
    deployment["metadata"]["namespace"] = "audit-v"
    apps.create_namespaced_deployment("audit-v", deployment)
    with pytest.raises(ApiException) as refused:
        apps.patch_namespaced_deployment("demo", "audit-v", {"spec": {"replicas": 1}})
    assert refused.value.status == 403
    reason = (
        "scale-down blocked for cocoon Deployment audit-v/demo (3 -> 1). "
        "Use a CocoonHibernation CR to suspend individual agents."
    )
    assert f"cocoon-webhook: {reason}" in json.loads(refused.value.body)["message"]
    assert audited(box, "deployments", "audit-v", "demo") == {
        "workloads.validate.cocoonstack.io/reason": reason
    }


def plain_deployment(name: str, replicas: int) -> dict[str, Any]:
    deployment = demo_deployment(replicas=replicas)
    deployment["metadata"]["name"] = name
    del deployment["spec"]["template"]["spec"]["tolerations"]
    return deployment


def test_webhook_down_blocks_only_cocoon_scale_downs(tmp_path: Path) -> None:
    with clients(tmp_path) as (down, core, apps):
        apps.create_namespaced_deployment("default", plain_deployment("web", 2))
        apps.create_namespaced_deployment("default", demo_deployment(replicas=3))
        assert down.server.stop() == 0

        # Any other workload rolls out and scales up (object and /scale) and down (object).
        image = {"containers": [{"name": "agent", "image": "web:2"}]}
        rollout = {"spec": {"template": {"spec": image}}}
        apps.patch_namespaced_deployment("web", "default", rollout)
        apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 6}})
        apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 9}})
        apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 1}})
        web = apps.read_namespaced_deployment("web", "default")
        assert (web.spec.replicas, web.spec.template.spec.containers[0].image) == (1, "web:2")
        # A cocoon workload too, as long as it does not shrink.
        apps.patch_namespaced_deployment("demo", "default", rollout)
        apps.patch_namespaced_deployment_scale("demo", "default", {"spec": {"replicas": 4}})
        # Pods that are not cocoon pods never wait for mutate either.
        plain = core.create_namespaced_pod("default", {
            "metadata": {"generateName": "web-"},
            "spec": {"containers": [{"name": "web", "image": "web:2"}]},
        })  # fmt: skip
        assert plain.metadata.name.startswith("web-")

        # What the webhook guards fails closed: a cocoon scale-down, by object or /scale. So
        # does any shrinking /scale: a Scale carries no template to tell a cocoon parent by.
        for shrink in (
            lambda: apps.patch_namespaced_deployment("demo", "default", {"spec": {"replicas": 2}}),
            lambda: apps.patch_namespaced_deployment_scale(
                "demo", "default", {"spec": {"replicas": 2}}
            ),
            lambda: apps.patch_namespaced_deployment_scale(
                "web", "default", {"spec": {"replicas": 0}}
            ),
        ):
            with pytest.raises(ApiException) as refused:
                shrink()
            assert refused.value.status == 500
            message = json.loads(refused.value.body)["message"]
            assert 'failed calling webhook "workloads.validate.cocoonstack.io"' in message
        assert apps.read_namespaced_deployment("demo", "default").spec.replicas == 4


def test_expired_certificate_fails_open_for_pods_and_closed_for_scale_downs(
    tmp_path: Path,
) -> None:
    with clients(tmp_path) as (expired, core, apps):
        apps.create_namespaced_deployment("default", demo_deployment(replicas=3))
        # The server reloads the pair on the next handshake, as after a missed renewal.
        serial = expired.pki.issue(expired=True)
        assert served_serial(expired.webhook_port) == serial

        pod = core.create_namespaced_pod("default", pod_in("default"))
        assert VM_NAME not in (pod.metadata.annotations or {})
        with pytest.raises(ApiException) as refused:
            apps.patch_namespaced_deployment("demo", "default", {"spec": {"replicas": 1}})
        assert refused.value.status == 500
        message = json.loads(refused.value.body)["message"]
        assert 'failed calling webhook "workloads.validate.cocoonstack.io"' in message
        assert "certificate has expired" in message
        apps.patch_namespaced_deployment("demo", "default", {"spec": {"replicas": 5}})
