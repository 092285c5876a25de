"""Fixtures of the emulator's conformance suite.

Every probe talks to the API only through the official `kubernetes` client (or its raw
`call_api` for what the typed API cannot express), in a namespace of its own, so the same
probes run on two backends, each probe once per backend (test ids `[emulator]` and `[real]`):
the emulator, and a real control plane (tests/control_plane: kube-apiserver, etcd and
kube-controller-manager built from Go modules; skipped outside CI when `go` is missing).

    pytest tests/conformance -k real               # only the real control plane
    pytest tests/conformance --real-cluster        # `real` = the cluster in KUBECONFIG instead

On the real backend, probes of the emulator's own controls (`/_emulator/...`) are skipped.
Cluster-scoped objects the probes create carry unique names and are deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kubernetes import client, config

from tests.conformance.helpers import raw, unique, wait_for
from tests.control_plane.launcher import ControlPlane
from tests.kube_emulator.launcher import EmulatorProcess


@dataclass
class Cluster:
    kubeconfig: str
    emulator: EmulatorProcess | None
    control_plane: ControlPlane | None = None  # the built one (not --real-cluster's)

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=self.kubeconfig)


@pytest.fixture(
    scope="session", params=["emulator", pytest.param("real", marks=pytest.mark.control_plane)]
)
def cluster(request: pytest.FixtureRequest) -> Cluster:
    if request.param == "emulator":
        emulator: EmulatorProcess = request.getfixturevalue("kube_emulator")
        return Cluster(emulator.kubeconfig, emulator)
    if request.config.getoption("--real-cluster"):
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        return Cluster(path.split(os.pathsep)[0], None)
    plane: ControlPlane = request.getfixturevalue("control_plane")
    return Cluster(plane.kubeconfig, None, plane)


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> client.ApiClient:
    return cluster.api_client()


@pytest.fixture(scope="session")
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="session")
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture(scope="session")
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.fixture(scope="session")
def apiext(api: client.ApiClient) -> client.ApiextensionsV1Api:
    return client.ApiextensionsV1Api(api)


@pytest.fixture(scope="session")
def admreg(api: client.ApiClient) -> client.AdmissionregistrationV1Api:
    return client.AdmissionregistrationV1Api(api)


@pytest.fixture
def ns(core: client.CoreV1Api, cluster: Cluster) -> Iterator[str]:
    name = unique("conf")
    core.create_namespace({"metadata": {"name": name}})
    if cluster.emulator is None:
        # The ServiceAccount admission plugin rejects pods until the controller has made the
        # namespace's default ServiceAccount (the emulator has neither).
        wait_for(lambda: _has_default_sa(core, name), "default ServiceAccount")
    try:
        yield name
    finally:
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(name, grace_period_seconds=0)


def _has_default_sa(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except client.ApiException:
        return False
    return True


@pytest.fixture
def emulator_only(cluster: Cluster) -> None:
    """For probes of the emulator's documented deviations (e.g. 415 for protobuf)."""
    if cluster.emulator is None:
        pytest.skip("documents an emulator-only behaviour")


@pytest.fixture
def controls(cluster: Cluster) -> EmulatorProcess:
    """The emulator's own test controls; probes that need them do not run on a real cluster."""
    if cluster.emulator is None:
        pytest.skip("emulator control endpoint: not part of a real cluster")
    cluster.emulator.clear_faults()
    return cluster.emulator


@pytest.fixture
def cleanup(api: client.ApiClient) -> Iterator[list[str]]:
    """Paths of cluster-scoped objects to DELETE after the probe."""
    paths: list[str] = []
    yield paths
    for path in reversed(paths):
        raw(api, "DELETE", path)
