"""FakeKube: a dict-backed KubeApi with resourceVersion semantics and scripted failures.

For unit tests of the layers above the adapter (the store's retry loop, the reaper's judging);
the adapter itself and every function are tested against the emulator instead.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from common.kube import AlreadyExists, ConfigMap, Conflict, KubeError, NotFound
from common.pod import NodeView, PodSummary, nodes_from_json, pods_from_json


class FakeKube:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions = itertools.count(1)
        self.configmaps: dict[tuple[str, str], ConfigMap] = {}
        self.nodes: list[dict[str, Any]] = []
        self.pods: list[dict[str, Any]] = []
        self.workloads: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        # verb -> queue of exceptions to raise (or callables run before the verb proceeds)
        self.script: dict[str, list[KubeError | Callable[[], None]]] = {}
        self._last_success: float | None = None

    def _enter(self, verb: str) -> None:
        self.calls.append(verb)
        queue = self.script.get(verb)
        if queue:
            action = queue.pop(0)
            if isinstance(action, KubeError):
                raise action
            action()
        self._last_success = time.monotonic()

    def last_success(self) -> float | None:
        return self._last_success

    def get_configmap(self, namespace: str, name: str, timeout: float) -> ConfigMap:
        self._enter("get_configmap")
        with self._lock:
            stored = self.configmaps.get((namespace, name))
            if stored is None:
                raise NotFound(f"get configmaps {namespace}/{name}: 404 NotFound", 404, "NotFound")
            return copy.deepcopy(stored)

    def create_configmap(self, configmap: ConfigMap, timeout: float) -> ConfigMap:
        self._enter("create_configmap")
        with self._lock:
            key = (configmap.namespace, configmap.name)
            if key in self.configmaps:
                raise AlreadyExists("create configmaps: 409 AlreadyExists", 409, "AlreadyExists")
            stored = copy.deepcopy(configmap)
            stored.resource_version = str(next(self._versions))
            self.configmaps[key] = stored
            return copy.deepcopy(stored)

    def replace_configmap(self, configmap: ConfigMap, timeout: float) -> ConfigMap:
        self._enter("replace_configmap")
        with self._lock:
            key = (configmap.namespace, configmap.name)
            stored = self.configmaps.get(key)
            if stored is None:
                raise NotFound("update configmaps: 404 NotFound", 404, "NotFound")
            if configmap.resource_version != stored.resource_version:
                raise Conflict("update configmaps: 409 Conflict", 409, "Conflict")
            fresh = copy.deepcopy(configmap)
            fresh.resource_version = str(next(self._versions))
            self.configmaps[key] = fresh
            return copy.deepcopy(fresh)

    def list_configmaps(
        self, namespace: str, label_selector: str, timeout: float
    ) -> list[ConfigMap]:
        self._enter("list_configmaps")
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if part)
        with self._lock:
            return [
                copy.deepcopy(cm)
                for (ns, _), cm in sorted(self.configmaps.items())
                if ns == namespace and all(cm.labels.get(k) == v for k, v in wanted.items())
            ]

    def list_nodes(self, label_selector: str, timeout: float) -> list[NodeView]:
        self._enter("list_nodes")
        key, _, value = label_selector.partition("=")
        return nodes_from_json(
            n for n in self.nodes if (n.get("metadata", {}).get("labels") or {}).get(key) == value
        )

    def list_pods(
        self, namespace: str | None, field_selector: str, timeout: float
    ) -> list[PodSummary]:
        self._enter("list_pods")
        node = ""
        for part in field_selector.split(","):
            if part.startswith("spec.nodeName="):
                node = part.split("=", 1)[1]
        pods = []
        for pod in self.pods:
            if namespace and pod["metadata"].get("namespace") != namespace:
                continue
            if node and pod.get("spec", {}).get("nodeName") != node:
                continue
            if node and pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                continue
            pods.append(pod)
        return pods_from_json(pods)

    def get_workload(
        self, resource: str, namespace: str, name: str, timeout: float
    ) -> dict[str, Any]:
        self._enter("get_workload")
        found = self.workloads.get((resource, namespace, name))
        if found is None:
            raise NotFound(f"get {resource} {namespace}/{name}: 404 NotFound", 404, "NotFound")
        return copy.deepcopy(found)

    def server_version(self, timeout: float) -> dict[str, Any]:
        self._enter("server_version")
        return {"major": "1", "minor": "33"}
