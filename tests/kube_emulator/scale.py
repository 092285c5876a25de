"""The /scale subresource: autoscaling/v1 Scale views of workloads and custom resources."""

from __future__ import annotations

from typing import Any

from tests.kube_emulator import errors, selectors, validation
from tests.kube_emulator.core import ApiCore, Target
from tests.kube_emulator.messages import Response, json_response
from tests.kube_emulator.resources import ResourceType
from tests.kube_emulator.store import Obj, clone


class ScaleVerbs(ApiCore):
    """GET, PUT and PATCH of /scale."""

    def _to_scale(self, rt: ResourceType, obj: Obj) -> Obj:
        meta = obj["metadata"]
        if rt.custom:
            replicas = _dig(obj, rt.scale_spec_path)
            status_replicas = _dig(obj, rt.scale_status_path)
            selector = _dig(obj, rt.scale_selector_path) if rt.scale_selector_path else None
        else:
            replicas = _dig(obj, "spec.replicas")
            status_replicas = _dig(obj, "status.replicas")
            selector = selectors.label_selector_string(_dig(obj, "spec.selector"))
        out_meta = {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        }
        status: Obj = {"replicas": status_replicas or 0}
        if selector:
            status["selector"] = selector
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": out_meta,
            "spec": {"replicas": replicas or 0},
            "status": status,
        }

    def _put_scale(self, t: Target, body: Obj, dry: bool) -> Response:
        meta = body["metadata"]
        if body.get("kind") not in (None, "Scale") or body.get("apiVersion") not in (
            None,
            "autoscaling/v1",
        ):
            raise errors.bad_request(
                f"the API version in the data ({body.get('apiVersion')}) does not match "
                "the expected API version (autoscaling/v1)"
            )
        if meta.get("name") != t.name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name', '')}) does not match "
                f"the name on the URL ({t.name})"
            )
        body_rv = str(meta.get("resourceVersion") or "")
        return self._put(
            t,
            body_rv,
            lambda cur: self._write_scale(t, cur, clone(body), dry, conditional=bool(body_rv)),
        )

    def _write_scale(
        self, t: Target, cur: Obj, scale: Obj, dry: bool, *, conditional: bool
    ) -> Response:
        rt = t.rt
        old_scale = self._to_scale(rt, cur)
        scale["apiVersion"], scale["kind"] = "autoscaling/v1", "Scale"
        scale_meta = scale.setdefault("metadata", {})
        for k, v in old_scale["metadata"].items():
            scale_meta.setdefault(k, v)
        _check_replicas(t.name, scale)
        admitted = self._admit(
            "UPDATE", rt, "scale", t.namespace, t.name, scale, old_scale, dry, kind="Scale"
        )
        if admitted is not None:
            scale = admitted
            _check_replicas(t.name, scale)
        replicas = scale["spec"]["replicas"]
        new = clone(cur)
        _set(new, rt.scale_spec_path if rt.custom else "spec.replicas", replicas)
        self._generation(rt, new, cur)
        headers = self._warning_headers()
        if new == cur or dry:
            return json_response(200, self._to_scale(rt, new), headers)
        stored = self._commit(rt, new, cur, conditional=conditional)
        return json_response(200, self._to_scale(rt, stored), headers)


def _check_replicas(name: str, scale: Obj) -> None:
    replicas = (scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.invalid(
            "autoscaling",
            "Scale",
            name,
            [validation.invalid("spec.replicas", replicas, "must be greater than or equal to 0")],
        )


def _dig(obj: Any, dotted: str) -> Any:
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _set(obj: Obj, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = obj
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value
