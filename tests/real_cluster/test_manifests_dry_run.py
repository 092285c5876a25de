"""Both installs against a real API server (issue 9, point 6): `kubectl apply --dry-run=server`
of everything the server serves, which runs its validation, defaulting and admission without
storing anything. Kinds of CRDs that are not installed here (cert-manager, Knative) cannot be
checked this way; tests/test_manifests.py checks them offline, and the skip names them.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from tests.real_cluster.conftest import Cluster
from tests.real_cluster.harness import apply, run_kubectl
from tests.test_manifests import BUILTIN_API_VERSIONS, INSTALLS, KUSTOMIZATIONS, kustomize


@cache
def _discovery(kubeconfig: str, api_version: str) -> frozenset[str]:
    path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    done = run_kubectl(kubeconfig, "get", "--raw", path, check=False)
    if done.returncode != 0:
        return frozenset()
    return frozenset(resource["kind"] for resource in json.loads(done.stdout)["resources"])


def served_kinds(cluster: Cluster, api_version: str) -> set[str]:
    """The kinds the server serves under `api_version` (discovery), none if it is unknown."""
    return set(_discovery(cluster.kubeconfig, api_version))


@cache
def built(install: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(KUSTOMIZATIONS[install]))


def builtin(obj: dict[str, Any]) -> bool:
    return obj["apiVersion"] in BUILTIN_API_VERSIONS


def dry_run(cluster: Cluster, objects: list[dict[str, Any]]) -> None:
    output = apply(cluster.kubeconfig, objects, "--dry-run=server")
    lines = output.splitlines()
    assert len(lines) == len(objects), output
    assert all(line.endswith("(server dry run)") for line in lines), output


@pytest.mark.parametrize("install", INSTALLS)
def test_builtin_kinds_pass_server_dry_run(cluster: Cluster, install: str) -> None:
    objects = [obj for obj in built(install) if builtin(obj)]
    for obj in objects:
        assert obj["kind"] in served_kinds(cluster, obj["apiVersion"]), obj["kind"]
    dry_run(cluster, objects)


@pytest.mark.parametrize("install", INSTALLS)
def test_custom_kinds_pass_server_dry_run_where_their_crd_is_installed(
    cluster: Cluster, install: str
) -> None:
    served, missing = [], set()
    for obj in built(install):
        if builtin(obj):
            continue
        if obj["kind"] in served_kinds(cluster, obj["apiVersion"]):
            served.append(obj)
        else:
            missing.add(f"{obj['kind']} ({obj['apiVersion']})")
    if served:
        dry_run(cluster, served)
    if missing:
        pytest.skip(f"{install}: not dry-run, CRD not installed here: {', '.join(sorted(missing))}")
