"""End to end through a real kube-apiserver's admission chain (issue 9, point 4).

The production webhook configurations call three standalone servers over verified TLS, and the
real kube-controller-manager makes the pods: a Deployment's ReplicaSet creates `generateName`
pods, a force-deleted pod is replaced, scaling goes through the controllers. The servers run with
the `cocoon-webhook` ServiceAccount's token, so each scenario also proves RBAC allows what it does.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from tests.functions_app import function_client
from tests.helpers.demo import invalid_cocoonset
from tests.real_cluster.conftest import Cluster
from tests.real_cluster.harness import (
    ACCOUNT,
    INFLIGHT_WINDOW_S,
    POOL_NODES,
    WAIT_S,
    Apis,
    Webhooks,
    affinity_entries,
    affinity_version,
    cocoon_deployment,
    cocoon_pod,
    counts_delta,
    ensure_namespace,
    force_delete_all_pods,
    plain_deployment,
    pods_of,
    reap_tick,
    request_counts,
    run_kubectl,
    vm_name,
    wait_for,
    webhook_request_total,
)
from tests.sandbox import sandbox

SCALE_DOWN = (
    'admission webhook "workloads.validate.cocoonstack.io" denied the request: '
    "cocoon-webhook: scale-down blocked for cocoon {kind} {ns}/{name} ({old} -> {new}). "
    "Use a CocoonHibernation CR to suspend individual agents."
)
REAP_GRACE_S = 2.0
REAP_WINDOW_S = 1.0


def admitted_pods(apis: Apis, namespace: str, count: int, app: str | None = None) -> list[Any]:
    """The namespace's pods (labelled `app=<app>` if given) once there are `count` of them,
    each with a VM name and a node."""

    def ready() -> list[Any] | None:
        pods = [p for p in pods_of(apis, namespace) if app in (None, p.metadata.labels["app"])]
        done = len(pods) == count and all(vm_name(p) and p.spec.node_name for p in pods)
        return pods if done else None

    return wait_for(ready, f"{count} admitted pods in {namespace}", timeout=WAIT_S)


def deployed(apis: Apis, namespace: str, replicas: int, name: str = "demo") -> list[Any]:
    """A cocoon Deployment's pods, as its ReplicaSet created them and mutate admitted them."""
    apis.apps.create_namespaced_deployment(namespace, cocoon_deployment(namespace, name, replicas))
    return admitted_pods(apis, namespace, replicas, app=name)


def assert_one_entry_per_pod(apis: Apis, namespace: str, pods: list[Any]) -> None:
    entries = affinity_entries(apis, namespace)
    assert len(entries) == len(pods)
    reserved = {entry["pod"]: (entry["vmName"], entry["node"]) for entry in entries.values()}
    assert reserved == {p.metadata.name: (vm_name(p), p.spec.node_name) for p in pods}


def denial(call: Any) -> tuple[int, str]:
    with pytest.raises(ApiException) as denied:
        call()
    return denied.value.status, json.loads(denied.value.body)["message"]


def test_deployment_pods_get_their_own_names_vm_names_and_pool_nodes(
    cluster: Cluster, webhooks: Webhooks
) -> None:
    admin = cluster.admin
    ns = ensure_namespace(admin, "e2e-replicas")
    pods = deployed(admin, ns, 5)
    names = {p.metadata.name for p in pods}
    assert len(names) == 5
    owners = {p.metadata.owner_references[0].name for p in pods}
    assert len(owners) == 1  # one ReplicaSet's generateName pods, each kept the name mutate set
    replicaset = owners.pop()
    assert all(name.startswith(f"{replicaset}-") for name in names)
    assert sorted(vm_name(p) for p in pods) == [f"vk-{ns}-demo-{slot}" for slot in range(5)]
    assert {p.spec.node_name for p in pods} <= set(POOL_NODES)
    assert_one_entry_per_pod(admin, ns, pods)


def test_a_force_deleted_pod_is_replaced_on_its_slot_and_node(
    cluster: Cluster, webhooks: Webhooks
) -> None:
    admin = cluster.admin
    ns = ensure_namespace(admin, "e2e-replace")
    pods = deployed(admin, ns, 3)
    victim = next(p for p in pods if vm_name(p) == f"vk-{ns}-demo-1")

    # Until its claim leaves the in-flight window, slot 1 counts as held by a pod in flight.
    claimed = datetime.fromisoformat(affinity_entries(admin, ns)[f"{ns}.demo.1"]["updatedAt"])
    wait_for(
        lambda: (datetime.now(UTC) - claimed).total_seconds() > INFLIGHT_WINDOW_S,
        "slot 1's claim to leave the in-flight window",
        timeout=INFLIGHT_WINDOW_S + 30,
    )
    # A replacement admitted before a webhook's pod cache has seen its predecessor's deletion
    # finds slot 1 still held by a live pod and takes a new slot (README: what the caches do not
    # see). The controllers wait (SIGSTOP) until every webhook process's cache has seen it.
    controllers = next(p for p in cluster.plane.processes if p.name == "kube-controller-manager")
    cached = webhooks.metric("cocoon_webhook_cache_objects", cache="pods")
    controllers.popen.send_signal(signal.SIGSTOP)
    try:
        admin.core.delete_namespaced_pod(victim.metadata.name, ns, grace_period_seconds=0)
        wait_for(
            lambda: (
                webhooks.metric("cocoon_webhook_cache_objects", cache="pods")
                == [count - 1 for count in cached]
            ),
            "every webhook's pod cache to see the deletion",
        )
    finally:
        controllers.popen.send_signal(signal.SIGCONT)

    def replacement() -> Any:
        fresh = [p for p in pods_of(admin, ns) if p.metadata.name != victim.metadata.name]
        new = [p for p in fresh if p.metadata.name not in {q.metadata.name for q in pods}]
        return new[0] if len(fresh) == 3 and new and vm_name(new[0]) else None

    new_pod = wait_for(replacement, "the controller's replacement pod")
    assert vm_name(new_pod) == f"vk-{ns}-demo-1"
    assert new_pod.spec.node_name == victim.spec.node_name
    assert_one_entry_per_pod(admin, ns, pods_of(admin, ns))
    assert affinity_entries(admin, ns)[f"{ns}.demo.1"]["pod"] == new_pod.metadata.name


def test_scale_down_is_denied_scale_up_allowed_plain_workloads_free(
    cluster: Cluster, webhooks: Webhooks
) -> None:
    admin = cluster.admin
    ns = ensure_namespace(admin, "e2e-scale")
    deployed(admin, ns, 2)
    # Not a cocoon workload: mutate leaves its pods to a scheduler (there is none here).
    admin.apps.create_namespaced_deployment(ns, plain_deployment(ns, "plain", replicas=3))

    down = {"spec": {"replicas": 1}}
    status, message = denial(lambda: admin.apps.patch_namespaced_deployment("demo", ns, down))
    expected = SCALE_DOWN.format(kind="Deployment", ns=ns, name="demo", old=2, new=1)
    assert (status, message) == (403, expected)
    status, message = denial(lambda: admin.apps.patch_namespaced_deployment_scale("demo", ns, down))
    expected = SCALE_DOWN.format(kind="Scale", ns=ns, name="demo", old=2, new=1)
    assert (status, message) == (403, expected)
    assert admin.apps.read_namespaced_deployment("demo", ns).spec.replicas == 2

    admin.apps.patch_namespaced_deployment_scale("demo", ns, {"spec": {"replicas": 3}})
    pods = admitted_pods(admin, ns, 3, app="demo")
    assert sorted(vm_name(p) for p in pods) == [f"vk-{ns}-demo-{slot}" for slot in range(3)]

    admin.apps.patch_namespaced_deployment("plain", ns, down)
    admin.apps.patch_namespaced_deployment_scale("plain", ns, {"spec": {"replicas": 0}})
    assert admin.apps.read_namespaced_deployment("plain", ns).spec.replicas == 0


def test_cocoonsets_are_validated(cluster: Cluster, webhooks: Webhooks) -> None:
    admin = cluster.admin
    ns = ensure_namespace(admin, "e2e-cocoonset")
    bad = invalid_cocoonset()
    bad["metadata"]["namespace"] = ns
    status, message = denial(
        lambda: admin.custom.create_namespaced_custom_object(
            "cocoonset.cocoonstack.io", "v1", ns, "cocoonsets", bad
        )
    )
    assert status == 403
    assert message == (
        'admission webhook "cocoonsets.validate.cocoonstack.io" denied the request: '
        "cocoon-webhook: invalid CocoonSet spec: spec.agent.image is required"
    )
    # Issue 15's fields reach the webhook: the API server neither prunes nor rejects them first.
    newer = {**bad, "spec": {
        "agent": {"image": "agent:1", "backend": "firecracker"},
        "toolboxes": [{"name": "tb", "image": "tb:1", "backend": "firecracker", "connType": "x"}],
        "hibernatePolicy": "keep",
    }}  # fmt: skip
    status, message = denial(
        lambda: admin.custom.create_namespaced_custom_object(
            "cocoonset.cocoonstack.io", "v1", ns, "cocoonsets", newer
        )
    )
    assert (status, message) == (403, (
        'admission webhook "cocoonsets.validate.cocoonstack.io" denied the request: '
        "cocoon-webhook: invalid CocoonSet spec: "
        "spec.agent: firecracker does not support clone mode, use mode=run instead; "
        'spec.toolboxes[0].connType must be ssh, rdp, vnc, or adb, got "x"; '
        'spec.hibernatePolicy must be retain or release, got "keep"'
    ))  # fmt: skip
    good = {**bad, "spec": {"agent": {"image": "ghcr.io/cocoonstack/agent:1", "replicas": 2}}}
    admin.custom.create_namespaced_custom_object(
        "cocoonset.cocoonstack.io", "v1", ns, "cocoonsets", good
    )
    stored = admin.custom.get_namespaced_custom_object(
        "cocoonset.cocoonstack.io", "v1", ns, "cocoonsets", "agents"
    )
    assert stored["spec"] == good["spec"]


def test_server_dry_run_carries_the_patch_and_writes_nothing(
    cluster: Cluster, webhooks: Webhooks
) -> None:
    admin = cluster.admin
    ns = ensure_namespace(admin, "e2e-dry-run")
    pod = cocoon_pod(ns, "")
    del pod["metadata"]["name"]
    pod["metadata"]["generateName"] = "agent-"
    before = affinity_version(admin)

    done = run_kubectl(
        cluster.kubeconfig, "create", "--dry-run=server", "-o", "json", "-f", "-",
        stdin=json.dumps(pod),
    )  # fmt: skip
    answer = json.loads(done.stdout)
    assert re.fullmatch(r"agent-[bcdfghjklmnpqrstvwxz2456789]{5}", answer["metadata"]["name"])
    assert answer["metadata"]["annotations"]["vm.cocoonstack.io/name"] == (
        f"vk-{ns}-{answer['metadata']['name']}"
    )
    assert answer["spec"]["nodeName"] in POOL_NODES

    assert affinity_version(admin) == before
    assert pods_of(admin, ns) == []


def test_reaper_releases_the_entries_of_deleted_pods(cluster: Cluster, webhooks: Webhooks) -> None:
    admin = cluster.admin
    ns = ensure_namespace(admin, "e2e-reap")
    assert_one_entry_per_pod(admin, ns, deployed(admin, ns, 3))
    kept = {k: v for k, v in affinity_entries(admin).items() if v["namespace"] != ns}

    admin.apps.delete_namespaced_deployment("demo", ns, propagation_policy="Background")

    def pods_gone() -> bool:
        force_delete_all_pods(admin, ns)
        return not pods_of(admin, ns)

    wait_for(pods_gone, f"every pod of {ns} to be gone")

    summaries: list[dict[str, Any]] = []
    with function_client(
        "reap",
        KUBECONFIG=str(cluster.account_kubeconfig(ACCOUNT)),
        REAPER_GRACE=f"{REAP_GRACE_S:g}s",
        AFFINITY_INFLIGHT_WINDOW=f"{REAP_WINDOW_S:g}s",
    ) as reap:

        def swept_clean() -> bool:
            summaries.append(reap_tick(reap))
            return not affinity_entries(admin, ns)

        wait_for(swept_clean, f"the entries of {ns} to be released", timeout=60)

    assert all(summary["errors"] == 0 for summary in summaries)
    assert sum(summary["marked"] for summary in summaries) >= 3
    assert sum(summary["released"] for summary in summaries) >= 3
    # Entries of pods that still exist are untouched by the release.
    remaining = affinity_entries(admin)
    assert {k: remaining.get(k, {}).get("pod") for k in kept} == {
        k: v["pod"] for k, v in kept.items()
    }


def test_sixty_replicas_over_three_webhook_processes(cluster: Cluster, webhooks: Webhooks) -> None:
    admin = cluster.admin
    ns = ensure_namespace(admin, "e2e-race")
    admin.apps.create_namespaced_deployment(ns, cocoon_deployment(ns, "race", replicas=0))
    before = webhooks.metric("cocoon_webhook_admission_total", handler="mutate")
    requests_before = cluster.plane.metrics_text()
    admin.apps.patch_namespaced_deployment("race", ns, {"spec": {"replicas": 60}})

    pods = admitted_pods(admin, ns, 60)
    assert len({p.metadata.name for p in pods}) == 60
    assert sorted(vm_name(p) for p in pods) == sorted(f"vk-{ns}-race-{s}" for s in range(60))
    assert_one_entry_per_pod(admin, ns, pods)

    after = webhooks.metric("cocoon_webhook_admission_total", handler="mutate")
    per_server = [a - b for a, b in zip(after, before, strict=True)]
    conflicts = webhooks.metric("cocoon_webhook_affinity_conflicts_total")
    requests_after = cluster.plane.metrics_text()
    requests = webhook_requests(
        counts_delta(request_counts(requests_before), request_counts(requests_after))
    )
    total = webhook_request_total(requests_after) - webhook_request_total(requests_before)
    per_admission = total / 60
    print(f"\n60 pods: mutate admissions per process {per_server}, 409 conflicts per process "
          f"(whole module) {conflicts}; API requests {dict(sorted(requests.items()))}, "
          f"{per_admission:.2f} per admission")  # fmt: skip
    assert all(count > 0 for count in per_server), "every replica behind the front took part"


def test_webhook_down_locks_out_no_system_namespace(cluster: Cluster, webhooks: Webhooks) -> None:
    admin = cluster.admin
    ns = ensure_namespace(admin, "e2e-down")
    namespaces = (ns, "kube-system", "cocoon-system")
    for namespace in namespaces:
        # Paused: no ReplicaSet, no pods; only the workload update matters here.
        deployment = cocoon_deployment(namespace, "down", replicas=2)
        deployment["spec"]["paused"] = True
        admin.apps.create_namespaced_deployment(namespace, deployment)

    webhooks.stop_servers()
    try:
        for namespace in namespaces:
            pod = admin.core.create_namespaced_pod(namespace, cocoon_pod(namespace, "while-down"))
            # mutate fails open (Ignore) where it applies, and never applies to system namespaces
            assert vm_name(pod) is None
            assert not pod.spec.node_name
        scale_down = {"spec": {"replicas": 1}}
        for namespace in ("kube-system", "cocoon-system"):
            admin.apps.patch_namespaced_deployment("down", namespace, scale_down)
        # validate fails closed (Fail) where it applies
        status, message = denial(
            lambda: admin.apps.patch_namespaced_deployment("down", ns, scale_down)
        )
        assert status == 500
        assert message.startswith(
            'Internal error occurred: failed calling webhook "workloads.validate.cocoonstack.io"'
        )
    finally:
        for namespace in namespaces:
            with contextlib.suppress(ApiException):
                admin.core.delete_namespaced_pod("while-down", namespace, grace_period_seconds=0)
            with contextlib.suppress(ApiException):
                admin.apps.delete_namespaced_deployment("down", namespace)
        webhooks.start_servers(3)
    back = cocoon_pod(ns, "back")
    wait_for(
        lambda: vm_name(admin.core.create_namespaced_pod(ns, back, dry_run="All")),
        "the webhooks to answer again",
    )


# --- API requests per mutate admission, real and emulated ------------------------------------

RS_NAME = "budget-5d8c7b9f6"
BUDGET_RESOURCES = ("configmaps", "pods", "nodes")


def budget_pods(namespace: str, owner_uid: str) -> list[dict[str, Any]]:
    """Three bare pods and three pods of a ReplicaSet, created one by one."""
    bare = [cocoon_pod(namespace, f"solo-{index}") for index in range(3)]
    owned = []
    for _ in range(3):
        pod = cocoon_pod(namespace, "")
        pod["metadata"] = {"generateName": f"{RS_NAME}-", "namespace": namespace,
                           "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                "name": RS_NAME, "uid": owner_uid}]}  # fmt: skip
        owned.append(pod)
    return bare + owned


def emulated_verb(entry: dict[str, Any]) -> tuple[str, str] | None:
    """(verb, resource) of an emulator request-log entry, as apiserver_request_total names it."""
    parts = entry["path"].strip("/").split("/")
    if "namespaces" in parts and parts.index("namespaces") + 2 < len(parts):
        rest = parts[parts.index("namespaces") + 2 :]
    else:
        rest = parts[2:] if parts[0] == "api" else parts[3:]
    if not rest:
        return None  # /version, discovery
    resource, named = rest[0], len(rest) > 1
    verb = entry["method"] if named or entry["method"] != "GET" else "LIST"
    if verb == "LIST" and entry.get("query", {}).get("watch") in ("true", "1"):
        verb = "WATCH"
    return (verb, resource) if resource in BUDGET_RESOURCES else None


def per_admission(key: tuple[str, str] | None) -> bool:
    """A request an admission makes: on the budget's resources, not our own pod POST, and not
    a cache's watch (each replica re-opens its watches every few seconds, admissions or not)."""
    return key is not None and key != ("POST", "pods") and key[0] != "WATCH"


def webhook_requests(counts: dict[tuple[str, ...], float]) -> dict[tuple[str, str], int]:
    """What admissions asked for, by any client (the controllers watch, they do not LIST)."""
    result: dict[tuple[str, str], int] = {}
    for (verb, resource, subresource, _code, _dry_run), value in counts.items():
        key = (verb, resource)
        if resource in BUDGET_RESOURCES and not subresource and per_admission(key):
            result[key] = result.get(key, 0) + int(value)
    return result


def test_api_requests_per_mutate_admission_match_the_emulator(
    cluster: Cluster, webhooks: Webhooks, tmp_path: Path
) -> None:
    admin = cluster.admin
    ns = ensure_namespace(admin, "e2e-budget")
    owner = cocoon_deployment(ns, "budget", replicas=0)["spec"]
    owner["selector"] = {"matchLabels": {"app": "nobody"}}
    owner["template"]["metadata"]["labels"] = {"app": "nobody"}
    replicaset = admin.apps.create_namespaced_replica_set(
        ns, {"metadata": {"name": RS_NAME}, "spec": owner}
    )
    # Warm-up: the ConfigMap exists on both sides before counting.
    admin.core.create_namespaced_pod(ns, cocoon_pod(ns, "warm-up"))
    before = cluster.plane.metrics_text()
    for pod in budget_pods(ns, replicaset.metadata.uid):
        assert vm_name(admin.core.create_namespaced_pod(ns, pod))
    after = cluster.plane.metrics_text()
    real = webhook_requests(counts_delta(request_counts(before), request_counts(after)))

    with sandbox(tmp_path, preferred=(0, 0)) as box:
        core = kubernetes.client.CoreV1Api(box.emulator.api_client())
        core.create_namespace({"metadata": {"name": ns}})
        core.create_namespaced_pod(ns, cocoon_pod(ns, "warm-up"))
        box.emulator.clear_requests()
        for pod in budget_pods(ns, "0b7c5a8e-0000-4000-8000-000000000001"):
            assert vm_name(core.create_namespaced_pod(ns, pod))
        emulated: dict[tuple[str, str], int] = {}
        for entry in box.emulator.requests():
            key = emulated_verb(entry)
            if key is not None and per_admission(key):
                emulated[key] = emulated.get(key, 0) + 1

    admissions = 6
    print(f"\nAPI requests for {admissions} mutate admissions (3 bare, 3 ReplicaSet pods):")
    for key in sorted(set(real) | set(emulated)):
        print(
            f"  {key[0]:5} {key[1]:11} real {real.get(key, 0):3}  emulator {emulated.get(key, 0):3}"
        )
    # Issue 10: mutate reads its caches, so an admission costs its one guarded PUT. A cache
    # that lags behind a write costs a 409, one GET and the PUT again: PUTs = 6 + GETs.
    for side in (real, emulated):
        gets = side.get(("GET", "configmaps"), 0)
        assert set(side) <= {("PUT", "configmaps"), ("GET", "configmaps")}, side
        assert side.get(("PUT", "configmaps"), 0) == admissions + gets, side
