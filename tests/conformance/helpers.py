"""Helpers of the conformance probes: raw requests through the client, unique names."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client


@dataclass
class Raw:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    body: Any = None,
    content_type: str = "application/json",
    accept: str = "application/json",
    query: list[tuple[str, str]] | None = None,
) -> Raw:
    """One request through the client's connection pool and auth, bytes in and out.

    The typed client rewrites some requests (a JSON patch given as an object becomes a
    strategic merge patch), so probes of the wire format bypass it. `body` that is not bytes
    is sent as JSON.
    """
    headers = {"Accept": accept}
    data: bytes | None = None
    if body is not None:
        headers["Content-Type"] = content_type
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    method, url, headers, _body, _ = api.param_serialize(
        method, path, query_params=query or [], header_params=headers, auth_settings=["BearerToken"]
    )
    resp = api.rest_client.pool_manager.request(
        method, url, body=data, headers=headers, preload_content=True, retries=False
    )
    return Raw(resp.status, resp.headers, resp.data)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def body_of(err: client.ApiException) -> dict[str, Any]:
    return json.loads(err.body)  # type: ignore[no-any-return]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll until `check()` is truthy (instant on the emulator; controllers take a while)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def configmap(name: str, data: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, **meta},
        "data": data or {},
    }


def pod(
    name: str,
    *,
    node: str | None = None,
    labels: dict[str, str] | None = None,
    image: str = "busybox:1.36",
) -> dict[str, Any]:
    """A pod no real scheduler picks up (its schedulerName does not exist), so probes decide
    whether and where it is bound."""
    spec: dict[str, Any] = {
        "schedulerName": "conformance-no-scheduler",
        "containers": [{"name": "main", "image": image}],
    }
    if node:
        spec["nodeName"] = node
        spec.pop("schedulerName")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def deployment(
    name: str, replicas: int = 1, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "schedulerName": "conformance-no-scheduler",
                    "containers": [{"name": "main", "image": "busybox:1.36"}],
                },
            },
        },
    }


BARRIER_LABEL = "conformance.example.com/barrier"


def webhooks_settled(
    admreg: client.AdmissionregistrationV1Api, apps: client.AppsV1Api, ns: str
) -> None:
    """Wait until the API server's admission chain has seen every webhook configuration
    written before this call (created, changed or deleted).

    kube-apiserver reads configurations through one informer per kind, each in write order:
    once a sentinel configuration written now refuses a dry-run write, every earlier write of
    its kind is in effect too. The sentinels select only Deployment creations carrying their
    own label value (no probe's or production webhook sees those), so they touch nothing else,
    and go again at once. The emulator applies configurations as they are written, so its
    first probe already answers.
    """
    for mutating in (True, False):
        _barrier(admreg, apps, ns, mutating=mutating)


def _barrier(
    admreg: client.AdmissionregistrationV1Api, apps: client.AppsV1Api, ns: str, *, mutating: bool
) -> None:
    value = uuid.uuid4().hex[:12]
    name = f"conformance-barrier-{value}"
    hook = {
        "name": "barrier.conformance.example.com",
        "clientConfig": {"url": "https://127.0.0.1:1/barrier"},
        "rules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"],
                   "resources": ["deployments"]}],
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        "objectSelector": {"matchLabels": {BARRIER_LABEL: value}},
        "timeoutSeconds": 1,
    }  # fmt: skip
    body = {"metadata": {"name": name}, "webhooks": [hook]}
    probe = deployment(name)
    probe["metadata"]["labels"] = {BARRIER_LABEL: value}

    def refused() -> bool:
        try:
            apps.create_namespaced_deployment(ns, probe, dry_run="All")
        except client.ApiException as exc:
            return exc.status == 500 and hook["name"] in (exc.body or "")
        return False

    kind = "mutating" if mutating else "validating"
    if mutating:
        admreg.create_mutating_webhook_configuration(body)
    else:
        admreg.create_validating_webhook_configuration(body)
    try:
        wait_for(refused, f"the {kind} webhook configurations to be in effect")
    finally:
        if mutating:
            admreg.delete_mutating_webhook_configuration(name)
        else:
            admreg.delete_validating_webhook_configuration(name)
