"""validate's `/scale` path against the emulator: one GET of the parent through the real client."""

from __future__ import annotations

import time
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


def settled_parent_gets(emulator: Any, expected: int) -> list[tuple[str, str]]:
    """The parent GETs once `expected` are logged: the log is in completion order, and a timed
    out attempt completes on the emulator's side only when its delay is over."""
    deadline = time.monotonic() + 10
    while len(gets := parent_gets(emulator)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return gets


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


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"status": 500}, id="500"),
        pytest.param({"status": 503}, id="503"),
        pytest.param({"status": 429}, id="429"),
        pytest.param({"drop": True}, id="dropped"),
        pytest.param({"delay": 3.0}, id="slow"),
    ],
)
def test_one_transient_parent_read_failure_is_retried(
    validate: TestClient, apps: Any, emulator: Any, fault: dict[str, Any]
) -> None:
    apps.create_namespaced_deployment("ns", workload(3))
    emulator.fault("GET", PARENT, **fault)
    emulator.clear_requests()
    response = response_of(validate.post("/validate", json=scale_review(3, 1)))
    assert response["status"]["message"] == blocked(3, 1)
    assert settled_parent_gets(emulator, 2) == [("GET", PARENT)] * 2


@pytest.mark.parametrize("status", [403, 422])
def test_a_final_parent_read_answer_is_not_retried(
    validate: TestClient, apps: Any, emulator: Any, status: int
) -> None:
    apps.create_namespaced_deployment("ns", workload(3))
    emulator.fault("GET", PARENT, status=status, times=2)
    emulator.clear_requests()
    response = response_of(validate.post("/validate", json=scale_review(3, 1)))
    assert response["status"]["message"].startswith(
        f"cocoon-webhook: cannot verify parent workload: get deployments ns/demo: {status} "
    )
    assert parent_gets(emulator) == [("GET", PARENT)]


def test_failing_parent_read_denies(validate: TestClient, apps: Any, emulator: Any) -> None:
    apps.create_namespaced_deployment("ns", workload(3))
    emulator.fault("GET", PARENT, status=500, times=3)
    before = admission_count("validate", "error")
    response = response_of(validate.post("/validate", json=scale_review(3, 1)))
    message = response["status"]["message"]
    assert message.startswith(
        "cocoon-webhook: cannot verify parent workload: "
        "get deployments ns/demo: 500 InternalError: "
    )
    assert "\n" not in message
    assert admission_count("validate", "error") == before + 1


def test_slow_parent_reads_deny_within_the_webhook_timeout(
    validate: TestClient, apps: Any, emulator: Any
) -> None:
    apps.create_namespaced_deployment("ns", workload(3))
    emulator.fault("GET", PARENT, delay=3.0, times=2)
    started = time.monotonic()
    response = response_of(validate.post("/validate", json=scale_review(3, 1)))
    assert time.monotonic() - started < 4.5  # the API server gives up on us after 5 s
    assert response["status"]["message"].startswith(
        "cocoon-webhook: cannot verify parent workload: get deployments ns/demo: timeout after "
    )
    assert len(settled_parent_gets(emulator, 2)) == 2


def test_dropped_parent_read_denies(validate: TestClient, apps: Any, emulator: Any) -> None:
    apps.create_namespaced_deployment("ns", workload(3))
    emulator.fault("GET", PARENT, drop=True, times=4)
    response = response_of(validate.post("/validate", json=scale_review(3, 1)))
    assert response["allowed"] is False
    assert response["status"]["message"].startswith(
        "cocoon-webhook: cannot verify parent workload: get deployments ns/demo: "
    )
