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
