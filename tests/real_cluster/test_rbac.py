"""RBAC of both installs on a real API server (issue 9, point 5; SPEC 12.4).

The `cluster` fixture applies the RBAC objects of knative/ and knative/standalone/ with kubectl.
Each ServiceAccount then speaks for itself: a TokenRequest token in its own kubeconfig, and
`kubectl auth can-i` with it (a SelfSubjectAccessReview, so the answer is the authorizer's for
that very token). The webhooks run with the `cocoon-webhook` token: every call that mutate,
validate, validate_cocoonhibernation and reap make must be allowed, and the API server must have
refused none of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.functions_app import function_client, wait_ready
from tests.helpers.demo import hibernation
from tests.kube_emulator.seed import COCOON_GROUP as GROUP
from tests.real_cluster.conftest import Cluster
from tests.real_cluster.harness import (
    ACCOUNT,
    Webhooks,
    cocoon_deployment,
    cocoon_pod,
    counts_delta,
    ensure_namespace,
    reap_tick,
    request_counts,
    run_kubectl,
    vm_name,
    wait_for,
)

# What the code calls (common/kube.py), and nothing more.
NEEDED = [
    ("get", "configmaps", "cocoon-system"),
    ("list", "configmaps", "cocoon-system"),
    ("create", "configmaps", "cocoon-system"),
    ("update", "configmaps", "cocoon-system"),
    ("list", "pods", ""),  # all namespaces: a node's usage
    ("list", "pods", "team-a"),
    ("list", "nodes", ""),
    # mutate's caches (common/cache.py)
    ("watch", "configmaps", "cocoon-system"),
    ("watch", "pods", ""),
    ("watch", "nodes", ""),
    ("get", "deployments.apps", "team-a"),
    ("get", "statefulsets.apps", "team-a"),
    ("list", "cocoonhibernations.cocoonset.cocoonstack.io", "team-a"),
]
REFUSED = [
    *[
        (verb, "configmaps", ns)
        for ns in ("default", "kube-system", "team-a")
        for verb in ("get", "create", "update", "patch", "delete")
    ],
    ("patch", "configmaps", "cocoon-system"),
    ("delete", "configmaps", "cocoon-system"),
    ("deletecollection", "configmaps", "cocoon-system"),
    ("delete", "pods", "team-a"),
    ("delete", "pods", "cocoon-system"),
    ("deletecollection", "pods", ""),
    ("create", "pods", "team-a"),
    ("update", "pods", "team-a"),
    ("get", "secrets", "cocoon-system"),
    ("list", "secrets", "cocoon-system"),
    ("list", "secrets", ""),
    ("watch", "secrets", ""),
    ("watch", "configmaps", ""),
    ("update", "deployments.apps", "team-a"),
    ("update", "nodes", ""),
]
# SPEC 12.1 / 12.6: these run without any grant of ours.
UNPRIVILEGED = [("cocoon-system", "default"), ("cocoon-system", "cocoon-reaper-tick")]
# (verb, resource) of every call in common/kube.py, as apiserver_request_total labels them.
WEBHOOK_CALLS = {
    ("GET", "configmaps"),
    ("LIST", "configmaps"),
    ("POST", "configmaps"),
    ("PUT", "configmaps"),
    ("LIST", "pods"),
    ("LIST", "nodes"),
    ("WATCH", "configmaps"),
    ("WATCH", "pods"),
    ("WATCH", "nodes"),
    ("GET", "deployments"),
    ("GET", "statefulsets"),
    ("LIST", "cocoonhibernations"),
}


def can_i(kubeconfig: Path, verb: str, resource: str, namespace: str) -> bool:
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    done = run_kubectl(kubeconfig, "auth", "can-i", verb, resource, *scope, check=False)
    assert done.returncode in (0, 1) and done.stdout.strip() in ("yes", "no"), done.stderr
    return done.stdout.strip() == "yes"


@pytest.fixture(scope="module")
def token(cluster: Cluster) -> Path:
    return cluster.account_kubeconfig(ACCOUNT)


@pytest.mark.parametrize(("verb", "resource", "namespace"), NEEDED)
def test_the_webhook_may_make_its_calls(
    token: Path, verb: str, resource: str, namespace: str
) -> None:
    assert can_i(token, verb, resource, namespace)


@pytest.mark.parametrize(("verb", "resource", "namespace"), REFUSED)
def test_the_webhook_may_not(token: Path, verb: str, resource: str, namespace: str) -> None:
    assert not can_i(token, verb, resource, namespace)


@pytest.mark.parametrize(("namespace", "account"), UNPRIVILEGED)
def test_accounts_without_api_access(cluster: Cluster, namespace: str, account: str) -> None:
    kubeconfig = cluster.account_kubeconfig(account, namespace)
    for verb, resource, where in NEEDED:
        assert not can_i(kubeconfig, verb, resource, where), (account, verb, resource, where)


def webhook_calls(before: dict[tuple[str, ...], float], cluster: Cluster) -> dict[str, set]:
    """The webhook's kinds of call the API server answered since `before`, by outcome."""
    after = request_counts(cluster.plane.metrics_text())
    calls: dict[str, set[tuple[str, ...]]] = {"allowed": set(), "refused": set()}
    for (verb, resource, subresource, code, _), _count in counts_delta(before, after).items():
        if (verb, resource) in WEBHOOK_CALLS and not subresource:
            calls["refused" if code == "403" else "allowed"].add((verb, resource))
    return calls


def stateful_set(namespace: str) -> dict[str, Any]:
    deployment = cocoon_deployment(namespace, "web", replicas=2)
    spec = {key: deployment["spec"][key] for key in ("replicas", "selector", "template")}
    return {"metadata": {"name": "web"}, "spec": {**spec, "serviceName": "web"}}


def test_mutate_validate_hibernation_and_reap_work_with_their_own_token(
    cluster: Cluster, webhooks: Webhooks, token: Path
) -> None:
    admin = cluster.admin
    ns = ensure_namespace(admin, "rbac-team")
    before = request_counts(cluster.plane.metrics_text())

    # mutate: GET/PUT the ConfigMap, LIST pods of the namespace and per node, LIST nodes
    pod = admin.core.create_namespaced_pod(ns, cocoon_pod(ns, "agent"))
    assert vm_name(pod) == f"vk-{ns}-agent"
    assert pod.spec.node_name
    # mutate's caches LIST, then WATCH, pods, nodes and the affinity ConfigMaps as they start:
    # the webhooks' caches did before `before`, so a mutate process of its own starts them here.
    with function_client("mutate", KUBECONFIG=str(token)) as mutate:
        wait_ready(mutate)

    # validate: the /scale path GETs the parent workload
    deployment = cocoon_deployment(ns, "demo", replicas=2)
    deployment["spec"]["paused"] = True
    admin.apps.create_namespaced_deployment(ns, deployment)
    admin.apps.create_namespaced_stateful_set(ns, stateful_set(ns))
    for scale in (admin.apps.patch_namespaced_deployment_scale,
                  admin.apps.patch_namespaced_stateful_set_scale):  # fmt: skip
        with pytest.raises(ApiException) as denied:
            scale(
                "demo" if "deployment" in scale.__name__ else "web", ns, {"spec": {"replicas": 1}}
            )
        assert "scale-down blocked for cocoon Scale" in json.loads(denied.value.body)["message"]

    # validate_cocoonhibernation: LIST the namespace's CocoonHibernations
    hibernations = (GROUP, "v1", ns, "cocoonhibernations")
    admin.custom.create_namespaced_custom_object(*hibernations, hibernation("a-0", "a-0", ns))
    with pytest.raises(ApiException) as denied:
        admin.custom.create_namespaced_custom_object(*hibernations, hibernation("a-0", "a-0", ns))
    assert "already has a live CocoonHibernation" in json.loads(denied.value.body)["message"]

    # reap: LIST ConfigMaps, LIST pods per namespace, PUT
    admin.core.delete_namespaced_pod("agent", ns, grace_period_seconds=0)
    with function_client(
        "reap",
        KUBECONFIG=str(token),
        REAPER_GRACE="2s",
        AFFINITY_INFLIGHT_WINDOW="1s",
    ) as reap:

        def marked() -> bool:
            summary = reap_tick(reap)
            assert summary["errors"] == 0, summary
            return bool(summary["marked"] or summary["released"])

        wait_for(marked, "a sweep that writes", timeout=30)

    calls = webhook_calls(before, cluster)
    assert calls["refused"] == set()
    # Every kind of call was made (creating the ConfigMap only if no other test did before;
    # reading it alone only after a conflict, as mutate plans on its cached copy).
    assert calls["allowed"] >= WEBHOOK_CALLS - {("POST", "configmaps"), ("GET", "configmaps")}
