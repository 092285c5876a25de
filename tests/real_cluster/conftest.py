"""Fixtures over the session's real control plane (`control_plane`, tests/control_plane).



`webhooks` (module): three standalone servers running as that ServiceAccount behind one
round-robin front, registered through the production webhook configurations.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.real_cluster.harness import (
    ACCOUNT,
    AFFINITY_NAMESPACE,
    POOL_NODES,
    RBAC_KINDS,
    Apis,
    Webhooks,
    add_pool_node,
    apply,
    count_webhook_requests,
    ensure_namespace,
    install_cocoon_crds,
    install_objects,
    running_webhooks,
    token_kubeconfig,
)


@dataclass
class Cluster:
    plane: Any  # tests.control_plane.launcher.ControlPlane
    admin: Apis
    directory: Path

    @property
    def kubeconfig(self) -> str:
        return str(self.plane.kubeconfig)

    def account_kubeconfig(self, account: str, namespace: str = AFFINITY_NAMESPACE) -> Path:
        return token_kubeconfig(
            self.admin,
            self.plane.url,
            Path(self.plane.workdir) / "ca.crt",
            namespace,
            account,
            self.directory / f"{namespace}.{account}.kubeconfig",
        )


@pytest.fixture(scope="package")
def cluster(control_plane: Any, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    admin = Apis(control_plane.api_client())
    ensure_namespace(admin, AFFINITY_NAMESPACE)
    for name in POOL_NODES:
        add_pool_node(admin, name)
    install_cocoon_crds(admin)
    apply(control_plane.kubeconfig, install_objects(RBAC_KINDS))
    count_webhook_requests(admin, control_plane.kubeconfig)
    return Cluster(control_plane, admin, tmp_path_factory.mktemp("real-cluster"))


# Module scope: between modules no configuration exists, so the manifests' dry run meets none.
@pytest.fixture(scope="module")
def webhooks(cluster: Cluster) -> Iterator[Webhooks]:
    kubeconfig = cluster.account_kubeconfig(ACCOUNT)
    with running_webhooks(cluster.admin, cluster.directory, kubeconfig) as hooks:
        yield hooks
