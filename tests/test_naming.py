"""Wire names: every string other cocoonstack components read is pinned here."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import pytest

from common import naming


def test_wire_constants() -> None:
    assert naming.TOLERATION_KEY == "virtual-kubelet.io/provider"
    assert naming.COCOONSET_KIND == "CocoonSet"
    assert naming.REPLICASET_KIND == "ReplicaSet"
    assert naming.POOL_KEY == "cocoonstack.io/pool"
    assert naming.DEFAULT_POOL == "default"
    assert naming.VM_NAME_ANNOTATION == "vm.cocoonstack.io/name"
    assert naming.VM_NAME_ANNOTATION_POINTER == "vm.cocoonstack.io~1name"
    assert naming.AFFINITY_NAMESPACE == "cocoon-system"
    assert naming.MAX_KEY_LEN == 253
    assert naming.affinity_configmap_name("gpu") == "cocoon-affinity-gpu"
    assert naming.affinity_labels("gpu") == {
        "app.kubernetes.io/managed-by": "cocoon-webhook",
        "cocoonstack.io/pool": "gpu",
    }


@pytest.mark.parametrize(
    ("ns", "deploy", "slot", "key", "vm_name"),
    [
        pytest.param("ns", "demo", 0, "ns.demo.0", "vk-ns-demo-0", id="first-slot"),
        pytest.param("ns", "demo", 12, "ns.demo.12", "vk-ns-demo-12", id="decimal-slot"),
        pytest.param("ns", "api.v1", 0, "ns.api.v1.0", "vk-ns-api.v1-0", id="dotted-deployment"),
        pytest.param("a-b", "c", 0, "a-b.c.0", "vk-a-b-c-0", id="ambiguous-vm-name-kept"),
    ],
)
def test_deployment_key_and_vm_name(
    ns: str, deploy: str, slot: int, key: str, vm_name: str
) -> None:
    assert naming.deployment_key(ns, deploy, slot) == key
    assert naming.deployment_vm_name(ns, deploy, slot) == vm_name


@pytest.mark.parametrize(
    ("ns", "pod", "key", "vm_name"),
    [
        pytest.param("ns", "web-0", "ns._pod.web-0", "vk-ns-web-0", id="statefulset-pod"),
        pytest.param("ns", "alone", "ns._pod.alone", "vk-ns-alone", id="bare-pod"),
        pytest.param("ns", "0", "ns._pod.0", "vk-ns-0", id="pod-named-like-legacy-key"),
    ],
)
def test_bare_key_and_vm_name(ns: str, pod: str, key: str, vm_name: str) -> None:
    assert naming.bare_key(ns, pod) == key
    assert naming.bare_vm_name(ns, pod) == vm_name


@pytest.mark.parametrize(
    "pod",
    [
        pytest.param("p" * (253 - len("ns._pod.")), id="exactly-253-unhashed"),
        pytest.param("p" * (254 - len("ns._pod.")), id="254-hashed"),
        pytest.param("x" * 253, id="max-pod-name"),
    ],
)
def test_bare_key_length(pod: str) -> None:
    key = naming.bare_key("ns", pod)
    plain = f"ns._pod.{pod}"
    if len(plain) <= 253:
        assert key == plain
        return
    digest = hashlib.sha256(pod.encode()).hexdigest()[:16]
    assert len(key) == 253
    assert key.startswith("ns._pod.")
    assert key.endswith("-" + digest)
    head = key[len("ns._pod.") : -17]
    assert pod.startswith(head)


def test_hashed_bare_keys_differ_for_long_names_with_a_shared_head() -> None:
    a = naming.bare_key("ns", "x" * 250 + "a")
    b = naming.bare_key("ns", "x" * 250 + "b")
    assert a != b
    assert len(a) == len(b) == 253


@dataclass(frozen=True)
class Ref:
    kind: str
    name: str


@pytest.mark.parametrize(
    ("refs", "deployment"),
    [
        pytest.param([Ref("ReplicaSet", "demo-7b7c9d9d5f")], "demo", id="deployment-rs"),
        pytest.param([Ref("ReplicaSet", "my-rs")], "my", id="hash-not-validated"),
        pytest.param([Ref("ReplicaSet", "frontend")], None, id="no-dash-bare"),
        pytest.param([Ref("ReplicaSet", "api.v1-abc12")], "api.v1", id="dotted"),
        pytest.param([Ref("ReplicaSet", "a-b-c")], "a-b", id="last-dash"),
        pytest.param([Ref("ReplicaSet", "-abc")], None, id="dash-at-zero"),
        pytest.param(
            [Ref("ReplicaSet", "-abc"), Ref("ReplicaSet", "web-1")], "web", id="next-ref-tried"
        ),
        pytest.param([Ref("replicaset", "web-1")], None, id="kind-case-sensitive"),
        pytest.param([Ref("StatefulSet", "web-1")], None, id="statefulset-ignored"),
        pytest.param([Ref("Job", "j-1"), Ref("ReplicaSet", "d-1")], "d", id="skips-other-kinds"),
        pytest.param([], None, id="no-owner"),
    ],
)
def test_owner_deployment(refs: list[Ref], deployment: str | None) -> None:
    assert naming.owner_deployment(refs) == deployment


@pytest.mark.parametrize(
    ("pool", "valid"),
    [
        pytest.param("default", True, id="default"),
        pytest.param("gpu-a100", True, id="dashes"),
        pytest.param("gpu.a100", True, id="dots"),
        pytest.param("a" * 63, True, id="63-chars"),
        pytest.param("a" * 64, False, id="64-chars"),
        pytest.param("GPU_Pool", False, id="valid-label-invalid-configmap-name"),
        pytest.param("gpu_pool", False, id="underscore"),
        pytest.param("Gpu", False, id="uppercase"),
        pytest.param("-gpu", False, id="leading-dash"),
        pytest.param("gpu-", False, id="trailing-dash"),
        pytest.param("gpu..a", False, id="empty-dns-label"),
        pytest.param("gpu/a", False, id="slash"),
        pytest.param("", False, id="empty"),
        pytest.param("gpu\n", False, id="trailing-newline"),
    ],
)
def test_is_valid_pool(pool: str, valid: bool) -> None:
    assert naming.is_valid_pool(pool) is valid


@pytest.mark.parametrize(
    ("generate_name", "prefix"),
    [
        pytest.param("demo-7b7c9d9d5f-", "demo-7b7c9d9d5f-", id="replicaset"),
        pytest.param("job-x-", "job-x-", id="job"),
        pytest.param("g" * 70, "g" * 58, id="cut-to-58"),
        pytest.param("", "", id="empty-prefix"),
    ],
)
def test_generate_pod_name(generate_name: str, prefix: str) -> None:
    name = naming.generate_pod_name(generate_name, random.Random(7))
    assert name.startswith(prefix)
    assert len(name) == len(prefix) + 5
    assert set(name[len(prefix) :]) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_generate_pod_name_is_reproducible_with_a_seeded_rng() -> None:
    assert naming.generate_pod_name("a-", random.Random(1)) == naming.generate_pod_name(
        "a-", random.Random(1)
    )
    assert len(naming.generate_pod_name("a-")) == 7  # the default rng needs no argument
