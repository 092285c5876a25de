"""FakeKube answers as the API server does: each scenario runs against FakeKube and against
ClientKubeApi on the emulator, seeded alike, and both must give the same outcome, errors
(type, status, reason, message) included."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest

from common.kube import ClientKubeApi, ConfigMap, KubeError, Unreachable
from tests.fakes import FakeKube

NS = "cocoon-system"
T = 5.0
POOL = "cocoonstack.io/pool"


def outcome(call: Callable[[], Any]) -> Any:
    """What a call gives, comparable across backends: its result, or its error."""
    try:
        return call()
    except KubeError as err:
        return (type(err).__name__, err.status, err.reason, str(err))


def configmap(name: str = "cm", **data: str) -> ConfigMap:
    return ConfigMap(name=name, namespace=NS, data=data, labels={"app": "cocoon"})


def rv_moves(kube: Any) -> tuple[bool, bool, bool, dict[str, str]]:
    """A PUT guarded by a stale version, one with no version, and one that changes nothing."""
    first = kube.create_configmap(configmap(a="1"), T)
    second = kube.replace_configmap(dataclasses.replace(first, data={"a": "2"}), T)
    stale = outcome(lambda: kube.replace_configmap(dataclasses.replace(first, data={"a": "x"}), T))
    unconditional = kube.replace_configmap(configmap(a="3"), T)
    same = kube.replace_configmap(unconditional, T)
    return (
        second.resource_version != first.resource_version,
        isinstance(stale, tuple) and stale[1] == 409,
        same.resource_version == unconditional.resource_version,
        kube.get_configmap(NS, "cm", T).data,
    )


def errors_of_writes(kube: Any) -> list[Any]:
    kube.create_configmap(configmap(a="1"), T)
    return [
        outcome(lambda: kube.get_configmap(NS, "nope", T)),
        outcome(lambda: kube.create_configmap(configmap(a="1"), T)),
        outcome(lambda: kube.replace_configmap(configmap("nope"), T)),
        outcome(lambda: kube.replace_configmap(configmap(**{"not a key": "v"}), T)),
        # the API server's 1 MiB limit on a ConfigMap's data
        outcome(lambda: kube.create_configmap(configmap("big", a="x" * (1024 * 1024 + 1)), T)),
        outcome(lambda: kube.get_workload("deployments", NS, "nope", T)),
    ]


def selections(kube: Any) -> list[Any]:
    names = lambda items: sorted(i.name for i in items)  # noqa: E731
    return [
        names(kube.list_nodes(POOL, T)),  # has the label
        names(kube.list_nodes(f"{POOL}=gpu", T)),
        names(kube.list_nodes(f"{POOL} in (default,gpu),!other", T)),
        names(kube.list_pods(None, "spec.nodeName=n1,status.phase!=Succeeded", T)),
        names(kube.list_pods(NS, "", T)),
        [cm.name for cm in kube.list_configmaps(NS, "app=cocoon", T)],
        outcome(lambda: kube.list_nodes("a in (b", T)),
        outcome(lambda: kube.list_pods(None, "spec.image=x", T)),
    ]


def seed(add_node: Callable[[str, dict[str, str]], None], add_pod: Callable[..., None]) -> None:
    add_node("n1", {POOL: "default"})
    add_node("n2", {POOL: "gpu"})
    add_node("n3", {"other": "x"})
    add_pod("running", "n1", "Running")
    add_pod("done", "n1", "Succeeded")
    add_pod("elsewhere", "n2", "Running")


def on_fake() -> FakeKube:
    fake = FakeKube()

    def add_pod(name: str, node: str, phase: str) -> None:
        fake.pods.append({"metadata": {"name": name, "namespace": NS},
                          "spec": {"nodeName": node}, "status": {"phase": phase}})  # fmt: skip

    seed(lambda name, labels: fake.nodes.append({"metadata": {"name": name, "labels": labels}}),
         add_pod)  # fmt: skip
    return fake


def on_emulator(emulator: Any) -> ClientKubeApi:
    core = kubernetes.client.CoreV1Api(emulator.api_client())

    def add_pod(name: str, node: str, phase: str) -> None:
        spec = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
        core.create_namespaced_pod(NS, {"metadata": {"name": name}, "spec": spec})
        core.patch_namespaced_pod_status(name, NS, {"status": {"phase": phase}})

    seed(lambda name, labels: core.create_node({"metadata": {"name": name, "labels": labels}}),
         add_pod)  # fmt: skip
    return ClientKubeApi(emulator.kubeconfig)


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param(rv_moves, id="resource-versions"),
        pytest.param(errors_of_writes, id="errors"),
        pytest.param(selections, id="selectors"),
    ],
)
def test_fake_answers_as_the_api_server(emulator: Any, scenario: Callable[[Any], Any]) -> None:
    expected = scenario(on_emulator(emulator))
    assert scenario(on_fake()) == expected


def test_rv_moves_reads_as_the_api_server_answers() -> None:
    """The facts the comparison above rests on, stated once."""
    assert rv_moves(on_fake()) == (True, True, True, {"a": "3"})


@pytest.mark.parametrize(
    ("error", "reached"),
    [
        pytest.param(KubeError("update configmaps: 500 InternalError: boom", 500), True, id="500"),
        pytest.param(Unreachable("update configmaps: connection refused"), False, id="no-answer"),
    ],
)
def test_an_error_answer_counts_as_contact(error: KubeError, reached: bool) -> None:
    """ClientKubeApi counts any HTTP answer, an error too, as contact with the API server."""
    fake = FakeKube()
    fake.script["server_version"] = [error]
    with pytest.raises(KubeError):
        fake.server_version(T)
    assert (fake.last_success() is not None) is reached
