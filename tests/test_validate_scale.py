"""validate's `/scale` path against the emulator: one GET of the parent through the real client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from starlette.testclient import TestClient

from tests.functions_app import function_client
from tests.helpers import admission_count, response_of, review, scale, workload

PARENT = "/apis/apps/v1/namespaces/ns/deployments/demo"


@pytest.fixture
def apps(emulator: Any) -> Any:
    kubernetes.client.CoreV1Api(emulator.api_client()).create_namespace(
        {"metadata": {"name": "ns"}}
    )
    return kubernetes.client.AppsV1Api(emulator.api_client())


@pytest.fixture
def validate(emulator: Any, apps: Any) -> Iterator[TestClient]:
    with function_client("validate", KUBECONFIG=emulator.kubeconfig) as client:
        yield client


def scale_review(old: int | None, new: int | None, resource: str = "deployments") -> dict:
    return review(scale(new), scale(old), kind="Scale", group="autoscaling",
                  resource=resource, sub_resource="scale")  # fmt: skip


def blocked(old: int, new: int) -> str:
    return (
        f"cocoon-webhook: scale-down blocked for cocoon Scale ns/demo ({old} -> {new}). "
        "Use a CocoonHibernation CR to suspend individual agents."
    )


def parent_gets(emulator: Any) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in emulator.requests() if "/apis/apps/" in r["path"]]


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet"])
def test_scale_down_of_a_cocoon_parent_is_denied(
    validate: TestClient, apps: Any, emulator: Any, kind: str
) -> None:
    resource = "deployments" if kind == "Deployment" else "statefulsets"
    body = workload(3, kind=kind)
    if kind == "Deployment":
        apps.create_namespaced_deployment("ns", body)
    else:
        body["spec"]["serviceName"] = "demo"
        apps.create_namespaced_stateful_set("ns", body)
    emulator.clear_requests()
    before = admission_count("validate", "deny")
    response = response_of(validate.post("/validate", json=scale_review(3, 1, resource)))
    assert response["status"]["message"] == blocked(3, 1)
    assert parent_gets(emulator) == [("GET", f"/apis/apps/v1/namespaces/ns/{resource}/demo")]
    assert admission_count("validate", "deny") == before + 1


def test_absent_new_replicas_count_as_zero(validate: TestClient, apps: Any) -> None:
    apps.create_namespaced_deployment("ns", workload(2))
    response = response_of(validate.post("/validate", json=scale_review(2, None)))
    assert response["status"]["message"] == blocked(2, 0)


def test_parent_without_the_toleration_is_allowed(validate: TestClient, apps: Any) -> None:
    apps.create_namespaced_deployment("ns", workload(3, cocoon=False))
    assert response_of(validate.post("/validate", json=scale_review(3, 1)))["allowed"] is True


def test_missing_parent_is_allowed(validate: TestClient, emulator: Any) -> None:
    before = admission_count("validate", "allow")
    assert response_of(validate.post("/validate", json=scale_review(3, 1)))["allowed"] is True
    assert parent_gets(emulator) == [("GET", PARENT)]
    assert admission_count("validate", "allow") == before + 1


def test_scale_up_needs_no_parent_read(validate: TestClient, apps: Any, emulator: Any) -> None:
    apps.create_namespaced_deployment("ns", workload(3))
    emulator.clear_requests()
    assert response_of(validate.post("/validate", json=scale_review(3, 3)))["allowed"] is True
    assert response_of(validate.post("/validate", json=scale_review(3, 5)))["allowed"] is True
    assert parent_gets(emulator) == []


def test_failing_parent_read_denies(validate: TestClient, apps: Any, emulator: Any) -> None:
    apps.create_namespaced_deployment("ns", workload(3))
    emulator.fault("GET", PARENT, status=500)
    before = admission_count("validate", "error")
    response = response_of(validate.post("/validate", json=scale_review(3, 1)))
    message = response["status"]["message"]
    assert message.startswith(
        "cocoon-webhook: cannot verify parent workload: "
        "get deployments ns/demo: 500 InternalError: "
    )
    assert "\n" not in message
    assert admission_count("validate", "error") == before + 1


def test_slow_parent_read_denies_after_two_seconds(
    validate: TestClient, apps: Any, emulator: Any
) -> None:
    apps.create_namespaced_deployment("ns", workload(3))
    emulator.fault("GET", PARENT, delay=3.0)
    response = response_of(validate.post("/validate", json=scale_review(3, 1)))
    assert response["status"]["message"] == (
        "cocoon-webhook: cannot verify parent workload: get deployments ns/demo: timeout after 2s"
    )


def test_dropped_parent_read_denies(validate: TestClient, apps: Any, emulator: Any) -> None:
    apps.create_namespaced_deployment("ns", workload(3))
    emulator.fault("GET", PARENT, drop=True, times=3)
    response = response_of(validate.post("/validate", json=scale_review(3, 1)))
    assert response["allowed"] is False
    assert response["status"]["message"].startswith(
        "cocoon-webhook: cannot verify parent workload: get deployments ns/demo: "
    )
