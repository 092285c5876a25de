"""FakeKube: a dict-backed KubeApi that answers as the API server does, with scripted failures.

For unit tests of the layers above the adapter (the store's retry loop, the reaper's judging):
it runs in process, and a script can raise or run code right before any one call, which the
emulator's faults (per HTTP request, over a socket) cannot place as precisely. The adapter
itself and every function are tested against the emulator instead.

Where it stands in for the API server it follows the emulator's rules (tests/kube_emulator):
label and field selectors with their full grammar; ConfigMaps validated (metadata, keys, the
1 MiB limit: 422); a PUT with a resourceVersion conditional on it (409), one without it
unconditional, and one that changes nothing leaving the resourceVersion as it was (no write);
errors worded as ClientKubeApi words the API server's; and an error answer, scripted or not,
counting as contact with the API server (`last_success`). Not modelled: namespaces (every
one exists), and the list pages and watches of the caches (`list_page`, `watch`).
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
from tests.kube_emulator import errors, selectors, validation
from tests.kube_emulator.errors import ApiError


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
                if action.status:  # an error answer still proves reachability, as in the adapter
                    self._last_success = time.monotonic()
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
                raise _error(f"get configmaps {namespace}/{name}", _missing(name))
            return copy.deepcopy(stored)

    def create_configmap(self, configmap: ConfigMap, timeout: float) -> ConfigMap:
        self._enter("create_configmap")
        what = f"create configmaps {configmap.namespace}/{configmap.name}"
        with self._lock:
            key = (configmap.namespace, configmap.name)
            _check_configmap(what, configmap)
            if key in self.configmaps:
                raise _error(what, errors.already_exists("", "configmaps", configmap.name))
            stored = copy.deepcopy(configmap)
            stored.resource_version = str(next(self._versions))
            self.configmaps[key] = stored
            return copy.deepcopy(stored)

    def replace_configmap(self, configmap: ConfigMap, timeout: float) -> ConfigMap:
        self._enter("replace_configmap")
        what = f"update configmaps {configmap.namespace}/{configmap.name}"
        with self._lock:
            key = (configmap.namespace, configmap.name)
            stored = self.configmaps.get(key)
            if stored is None:
                raise _error(what, _missing(configmap.name))
            # without a resourceVersion the PUT is unconditional (ConfigMaps allow it)
            if configmap.resource_version not in ("", stored.resource_version):
                raise _error(what, errors.stale("", "configmaps", configmap.name))
            _check_configmap(what, configmap)
            fresh = copy.deepcopy(configmap)
            fresh.resource_version = stored.resource_version
            if fresh == stored:
                return copy.deepcopy(stored)  # GuaranteedUpdate writes nothing: same version
            fresh.resource_version = str(next(self._versions))
            self.configmaps[key] = fresh
            return copy.deepcopy(fresh)

    def list_configmaps(
        self, namespace: str, label_selector: str, timeout: float
    ) -> list[ConfigMap]:
        self._enter("list_configmaps")
        wanted = _labels(f"list configmaps {namespace}", label_selector)
        with self._lock:
            return [
                copy.deepcopy(cm)
                for (ns, _), cm in sorted(self.configmaps.items())
                if ns == namespace and wanted.matches(cm.labels)
            ]

    def list_nodes(self, label_selector: str, timeout: float) -> list[NodeView]:
        self._enter("list_nodes")
        wanted = _labels("list nodes", label_selector)
        return nodes_from_json(
            n for n in self.nodes if wanted.matches(n.get("metadata", {}).get("labels"))
        )

    def list_pods(
        self, namespace: str | None, field_selector: str, timeout: float
    ) -> list[PodSummary]:
        what = f"list pods {namespace or ''}".rstrip()
        self._enter("list_pods")
        try:
            wanted = selectors.parse_field_selector(field_selector, "", "pods")
        except selectors.SelectorError as bad:
            raise _error(what, errors.bad_request(str(bad))) from None
        return pods_from_json(
            pod
            for pod in self.pods
            if (not namespace or pod["metadata"].get("namespace") == namespace)
            and wanted.matches(pod)
        )

    def get_workload(
        self, resource: str, namespace: str, name: str, timeout: float
    ) -> dict[str, Any]:
        self._enter("get_workload")
        found = self.workloads.get((resource, namespace, name))
        if found is None:
            raise _error(
                f"get {resource} {namespace}/{name}", errors.not_found("apps", resource, name)
            )
        return copy.deepcopy(found)

    def server_version(self, timeout: float) -> dict[str, Any]:
        self._enter("server_version")
        return {"major": "1", "minor": "33"}


def _missing(name: str) -> ApiError:
    return errors.not_found("", "configmaps", name)


def _error(what: str, err: ApiError) -> KubeError:
    """The API server's answer as ClientKubeApi raises it (common.kube._translate)."""
    text = f"{what}: {err.code} {err.reason}: {' '.join(err.message.split())}"
    if err.code == 404:
        return NotFound(text, 404, err.reason)
    if err.code == 409:
        kind = AlreadyExists if err.reason == "AlreadyExists" else Conflict
        return kind(text, 409, err.reason)
    return KubeError(text, err.code, err.reason)


def _labels(what: str, text: str) -> selectors.LabelSelector:
    try:
        return selectors.parse_label_selector(text)
    except selectors.SelectorError as bad:
        raise _error(what, errors.bad_request(str(bad))) from None


def _check_configmap(what: str, configmap: ConfigMap) -> None:
    obj = configmap.to_json()
    check = validation.name_check("", "configmaps")
    causes = validation.validate_object_meta(obj["metadata"], namespaced=True, name_check=check)
    causes += validation.validate_configmap(obj, None)
    if causes:
        raise _error(what, errors.invalid("", "ConfigMap", configmap.name, causes))
