"""The one door to the Kubernetes API.

Everything else sees `KubeApi`, plain JSON dicts or `ConfigMap` values, and the errors below;
only this module imports `kubernetes` (ruff TID251 enforces it). The client's typed model
objects are skipped on purpose: we ask for raw JSON (`_preload_content=False`), which is both
faster and lets the narrow pydantic views decide what they accept.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import kubernetes
import kubernetes.watch
import urllib3
from kubernetes.client.exceptions import ApiException

from common.pod import NodeView, PodSummary, nodes_from_json, pods_from_json

# Every LIST pages through its results: one unbounded LIST of a large cluster's pods is tens of
# MB in one answer, for the API server and for us.
LIST_PAGE_SIZE = 500
COCOONHIBERNATIONS = "/apis/cocoonset.cocoonstack.io/v1/namespaces/{namespace}/cocoonhibernations"


class KubeError(Exception):
    """An API call that did not succeed. `status` is None when no HTTP answer arrived;
    `retry_after` is the server's Retry-After in seconds, when it sent one."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        reason: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    """409 Conflict: the resourceVersion precondition failed."""


class AlreadyExists(KubeError):
    """409 AlreadyExists on create: someone else created the object first."""


class Unreachable(KubeError):
    """No answer: connection refused or reset, TLS failure, or timeout."""


class Gone(KubeError):
    """410 Gone: the resourceVersion a watch or a continue token names is compacted away."""


@dataclass(frozen=True)
class ListPage:
    """One page of a LIST: its items, the list's resourceVersion, and the token for the next
    page (empty on the last)."""

    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str


@dataclass
class ConfigMap:
    name: str
    namespace: str
    data: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    resource_version: str = ""

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ConfigMap:
        meta = obj.get("metadata") or {}
        return cls(
            name=meta.get("name", ""),
            namespace=meta.get("namespace", ""),
            data=dict(obj.get("data") or {}),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            resource_version=meta.get("resourceVersion", ""),
        )

    def to_json(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self.labels:
            meta["labels"] = self.labels
        if self.annotations:
            meta["annotations"] = self.annotations
        if self.resource_version:
            meta["resourceVersion"] = self.resource_version
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": self.data}


class KubeApi(Protocol):
    """The calls this project makes, and nothing else (RBAC in knative/ grants exactly these)."""

    def get_configmap(self, namespace: str, name: str, timeout: float) -> ConfigMap: ...

    def create_configmap(self, configmap: ConfigMap, timeout: float) -> ConfigMap: ...

    def replace_configmap(self, configmap: ConfigMap, timeout: float) -> ConfigMap:
        """PUT guarded by `configmap.resource_version`; raises Conflict when it is stale."""
        ...

    def list_configmaps(
        self, namespace: str, label_selector: str, timeout: float
    ) -> list[ConfigMap]: ...

    def list_nodes(self, label_selector: str, timeout: float) -> list[NodeView]: ...

    def list_pods(
        self, namespace: str | None, field_selector: str, timeout: float
    ) -> list[PodSummary]:
        """Pods of one namespace, or of all namespaces when `namespace` is None."""
        ...

    def get_workload(
        self, resource: str, namespace: str, name: str, timeout: float
    ) -> dict[str, Any]:
        """GET apps/v1 `deployments` or `statefulsets`."""
        ...

    def list_cocoonhibernations(self, namespace: str, timeout: float) -> list[dict[str, Any]]:
        """Every CocoonHibernation of `namespace`, all pages within `timeout` altogether."""
        ...

    def server_version(self, timeout: float) -> dict[str, Any]: ...

    def list_page(
        self, collection: str, label_selector: str, continue_token: str, timeout: float
    ) -> ListPage:
        """One page (LIST_PAGE_SIZE items at most) of a collection path such as
        `/api/v1/pods`; what a reflector lists before it watches."""
        ...

    def watch(
        self, collection: str, label_selector: str, resource_version: str, timeout_s: int
    ) -> Iterator[dict[str, Any]]:
        """Events (`{"type", "object"}`, raw JSON, bookmarks included) after
        `resource_version`, until the server ends the watch after `timeout_s`. Raises Gone
        when the version is too old and KubeError when the watch fails."""
        ...

    def last_success(self) -> float | None:
        """time.monotonic() of the last call that got an answer from the API server."""
        ...


def _describe(exc: ApiException) -> tuple[str, str]:
    """Reason and message from the Status body the API server sends with every error."""
    try:
        status = json.loads(exc.body or b"{}")
    except (ValueError, TypeError):
        status = {}
    if not isinstance(status, dict):
        status = {}
    reason = str(status.get("reason") or exc.reason or "")
    message = " ".join(str(status.get("message") or exc.reason or "").split())
    return reason, message


def _retry_after(exc: ApiException) -> float | None:
    """Retry-After in seconds (the API server sends whole seconds, never an HTTP date)."""
    value = (exc.headers or {}).get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def _translate(exc: Exception, what: str, timeout: float) -> KubeError:
    if isinstance(exc, ApiException):
        if exc.status == 0 or exc.status is None:
            return Unreachable(f"{what}: {exc.reason}")
        reason, message = _describe(exc)
        text = f"{what}: {exc.status} {reason}: {message}"
        if exc.status == 404:
            return NotFound(text, 404, reason)
        if exc.status == 410:
            return Gone(text, 410, reason)
        if exc.status == 409:
            kind = AlreadyExists if reason == "AlreadyExists" else Conflict
            return kind(text, 409, reason)
        return KubeError(text, exc.status, reason, _retry_after(exc))
    cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    if isinstance(cause, urllib3.exceptions.NewConnectionError):
        # urllib3 derives NewConnectionError (refused, unresolvable) from its TimeoutError:
        # said as a timeout it would send an operator after a slow server that never answered.
        return Unreachable(f"{what}: cannot connect: {_connect_failure(cause)}")
    if isinstance(exc, urllib3.exceptions.TimeoutError) or (
        isinstance(exc, urllib3.exceptions.MaxRetryError)
        and isinstance(exc.reason, urllib3.exceptions.TimeoutError)
    ):
        return Unreachable(f"{what}: timeout after {timeout:g}s")
    return Unreachable(f"{what}: {' '.join(str(exc).split())}")


def _connect_failure(exc: urllib3.exceptions.NewConnectionError) -> str:
    """The OS's reason (`[Errno 111] Connection refused`, `Failed to resolve 'x' (...)`),
    without urllib3's `HTTPSConnection(host=..., port=...): ` and boilerplate before it."""
    text = " ".join(str(exc).split())
    if text.startswith("HTTP") and "): " in text:
        text = text.split("): ", 1)[1]
    return text.removeprefix("Failed to establish a new connection: ")


def _kubeconfig_paths(kubeconfig: str | None) -> str | None:
    """KUBECONFIG's paths, else ~/.kube/config if present, else None (in-cluster)."""
    default = os.path.expanduser("~/.kube/config")
    if kubeconfig:
        return kubeconfig
    return default if os.path.exists(default) else None


class _NoConfiguration(Exception):
    """Neither a kubeconfig nor the in-cluster environment."""


def _config_failure(exc: Exception, paths: str | None) -> Unreachable:
    """One line for a kubeconfig that cannot be used. The loaders raise ConfigException, YAML
    and OS errors that say what is wrong, and bare TypeErrors and the like for a readable file
    that is no kubeconfig (`'str' object does not support item assignment`), named as such."""
    if isinstance(exc, kubernetes.config.ConfigException | OSError | ValueError | _NoConfiguration):
        reason = str(exc)
    else:
        reason = f"{paths}: not a kubeconfig ({type(exc).__name__}: {exc})"
    return Unreachable(f"load kubeconfig: {' '.join(reason.split())}")


def _load_configuration(kubeconfig: str | None, context: str | None = None) -> Any:
    """KUBECONFIG (`:`-separated paths merge as kubectl does), ~/.kube/config, or in-cluster;
    `context` picks a kubeconfig context other than the current one."""
    configuration = kubernetes.client.Configuration()
    paths = _kubeconfig_paths(kubeconfig)
    if paths:
        kubernetes.config.load_kube_config(
            config_file=paths, context=context, client_configuration=configuration
        )
    else:
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except kubernetes.config.ConfigException as exc:
            # The client says only "Service host/port is not set."
            raise _NoConfiguration(
                "no KUBECONFIG, no ~/.kube/config, and not running in a cluster "
                f"({' '.join(str(exc).split())})"
            ) from exc
    # Only connection failures are retried here; answers that say "try again" (Retry-After
    # included) and timeouts go to the callers (common/retry.py), which know their time left.
    configuration.retries = urllib3.Retry(
        total=1, connect=1, read=0, status=0, redirect=0, respect_retry_after_header=False
    )
    # One process serves many threads; urllib3's default pool of 4 would serialise them.
    configuration.connection_pool_maxsize = 64
    return configuration


def context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace kubectl would use by default: the context's, else `default`."""
    paths = _kubeconfig_paths(kubeconfig)
    if not paths:
        return "default"
    try:
        contexts, current = kubernetes.config.list_kube_config_contexts(config_file=paths)
    except Exception as exc:  # the loader raises several unrelated types
        raise _config_failure(exc, paths) from exc
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace or "default")


class ClientKubeApi:
    """KubeApi on the official `kubernetes` client, created lazily on first use."""

    def __init__(self, kubeconfig: str | None, context: str | None = None) -> None:
        self._kubeconfig = kubeconfig
        self._context = context
        self._lock = threading.Lock()
        self._client: Any = None
        self._last_success: float | None = None

    def _api(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    configuration = _load_configuration(self._kubeconfig, self._context)
                except Exception as exc:  # the loaders raise several unrelated types
                    paths = _kubeconfig_paths(self._kubeconfig)
                    raise _config_failure(exc, paths) from exc
                self._client = kubernetes.client.ApiClient(configuration)
            return self._client

    def load(self) -> None:
        """Read the kubeconfig now (file reads only): the standalone server refuses to start on
        a bad one, where functions would only find out on their first call."""
        self._api()

    def last_success(self) -> float | None:
        return self._last_success

    def _call(
        self,
        what: str,
        timeout: float,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
        budget: float | None = None,
    ) -> Any:
        """One request; `budget` is the timeout a timeout error names when `timeout` is only
        what is left of it (the later pages of a LIST)."""
        api = self._api()
        try:
            request = api.param_serialize(
                method=method,
                resource_path=path,
                query_params=query or None,
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = api.call_api(*request, _request_timeout=max(timeout, 0.001))
            data = response.read()
            if not 200 <= response.status <= 299:
                raise ApiException(http_resp=response, body=data)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            if isinstance(exc, ApiException) and exc.status:
                self._last_success = time.monotonic()  # an error answer still proves reachability
            raise _translate(exc, what, timeout if budget is None else budget) from exc
        self._last_success = time.monotonic()
        return json.loads(data)

    def _page(
        self,
        what: str,
        path: str,
        timeout: float,
        query: list[tuple[str, str]],
        token: str,
        budget: float | None = None,
    ) -> ListPage:
        params = [*query, ("limit", str(LIST_PAGE_SIZE))]
        if token:
            params.append(("continue", token))
        page = self._call(what, timeout, "GET", path, params, budget=budget)
        meta = page.get("metadata") or {}
        return ListPage(
            page.get("items") or [], meta.get("resourceVersion") or "", meta.get("continue") or ""
        )

    def _list(
        self, what: str, path: str, timeout: float, query: list[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        """Every page of a LIST, within one timeout for all of them."""
        deadline = time.monotonic() + timeout
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            page = self._page(what, path, deadline - time.monotonic(), query, token, timeout)
            items.extend(page.items)
            token = page.continue_token
            if not token:
                return items

    def list_page(
        self, collection: str, label_selector: str, continue_token: str, timeout: float
    ) -> ListPage:
        query = [("labelSelector", label_selector)] if label_selector else []
        return self._page(f"list {collection}", collection, timeout, query, continue_token)

    def watch(
        self, collection: str, label_selector: str, resource_version: str, timeout_s: int
    ) -> Iterator[dict[str, Any]]:
        api = self._api()
        what = f"watch {collection}"
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_s)),
        ]
        if label_selector:
            query.append(("labelSelector", label_selector))

        # The client's Watch does the streaming and line framing; without a return type in
        # this function's signature it hands events over as raw JSON, which we want.
        def open_watch(**_watch_arguments: Any) -> Any:
            request = api.param_serialize(
                method="GET",
                resource_path=collection,
                query_params=query,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
            # Connect within seconds; reads may be idle until the server's own timeout.
            response = api.call_api(*request, _request_timeout=(10.0, timeout_s + 30.0))
            if not 200 <= response.status <= 299:
                raise ApiException(
                    status=response.status, reason=response.reason, body=response.read()
                )
            return response.response  # the streaming urllib3 response the Watch reads

        watcher = kubernetes.watch.Watch()
        try:
            for event in watcher.stream(open_watch, timeout_seconds=timeout_s):
                self._last_success = time.monotonic()
                if not isinstance(event, dict):  # the client hands over a line that is not JSON
                    raise Unreachable(f"{what}: a line of the stream is not a JSON event")
                yield {"type": event.get("type", ""), "object": event.get("raw_object")}
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if isinstance(exc, ValueError):  # a line that is not JSON: the stream broke
                raise Unreachable(f"{what}: {' '.join(str(exc).split())}") from exc
            raise _translate(exc, what, timeout_s) from exc
        finally:
            watcher.stop()

    def get_configmap(self, namespace: str, name: str, timeout: float) -> ConfigMap:
        path = f"/api/v1/namespaces/{namespace}/configmaps/{name}"
        return ConfigMap.from_json(
            self._call(f"get configmaps {namespace}/{name}", timeout, "GET", path)
        )

    def create_configmap(self, configmap: ConfigMap, timeout: float) -> ConfigMap:
        path = f"/api/v1/namespaces/{configmap.namespace}/configmaps"
        what = f"create configmaps {configmap.namespace}/{configmap.name}"
        body = configmap.to_json()
        body["metadata"].pop("resourceVersion", None)
        return ConfigMap.from_json(self._call(what, timeout, "POST", path, body=body))

    def replace_configmap(self, configmap: ConfigMap, timeout: float) -> ConfigMap:
        path = f"/api/v1/namespaces/{configmap.namespace}/configmaps/{configmap.name}"
        what = f"update configmaps {configmap.namespace}/{configmap.name}"
        return ConfigMap.from_json(self._call(what, timeout, "PUT", path, body=configmap.to_json()))

    def list_configmaps(
        self, namespace: str, label_selector: str, timeout: float
    ) -> list[ConfigMap]:
        path = f"/api/v1/namespaces/{namespace}/configmaps"
        items = self._list(
            f"list configmaps {namespace}", path, timeout, [("labelSelector", label_selector)]
        )
        return [ConfigMap.from_json(item) for item in items]

    def list_nodes(self, label_selector: str, timeout: float) -> list[NodeView]:
        query = [("labelSelector", label_selector)]
        return nodes_from_json(self._list("list nodes", "/api/v1/nodes", timeout, query))

    def list_pods(
        self, namespace: str | None, field_selector: str, timeout: float
    ) -> list[PodSummary]:
        path = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
        query = [("fieldSelector", field_selector)] if field_selector else []
        what = f"list pods {namespace or ''}".rstrip()
        return pods_from_json(self._list(what, path, timeout, query))

    def get_workload(
        self, resource: str, namespace: str, name: str, timeout: float
    ) -> dict[str, Any]:
        path = f"/apis/apps/v1/namespaces/{namespace}/{resource}/{name}"
        result: dict[str, Any] = self._call(
            f"get {resource} {namespace}/{name}", timeout, "GET", path
        )
        return result

    def list_cocoonhibernations(self, namespace: str, timeout: float) -> list[dict[str, Any]]:
        path = COCOONHIBERNATIONS.format(namespace=namespace)
        return self._list(f"list cocoonhibernations {namespace}", path, timeout, [])

    def server_version(self, timeout: float) -> dict[str, Any]:
        result: dict[str, Any] = self._call("get version", timeout, "GET", "/version")
        return result
