"""Create, update (PUT, /status), PATCH in its three formats, and pods/binding.

Writes commit with the resourceVersion they read: 409 on a lost race for conditional writes;
unconditional writes and patches re-read and retry, like GuaranteedUpdate."""

from __future__ import annotations

import json
import random
from typing import Any

from tests.kube_emulator import errors, patch, validation
from tests.kube_emulator.core import NAMESPACE_MISMATCH, WRITE_ATTEMPTS, Retry, Target, now_rfc3339
from tests.kube_emulator.deletes import DeleteVerbs
from tests.kube_emulator.errors import ApiError
from tests.kube_emulator.messages import Request, Response, json_response
from tests.kube_emulator.resources import ResourceType
from tests.kube_emulator.scale import ScaleVerbs
from tests.kube_emulator.store import Obj, clone

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
PATCH_TYPES = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
]
JSON_PATCH_REJECTED = "the server rejected our request due to an error in our request"


class WriteVerbs(ScaleVerbs, DeleteVerbs):
    """POST, PUT and PATCH."""

    def _create(self, t: Target, req: Request) -> Response:
        rt, ns = t.rt, t.namespace
        if t.subresource:
            raise errors.method_not_allowed()
        obj = self._object_body(req)
        self._check_kind(rt, obj)
        dry = self._dry_run(req.query)
        meta = obj["metadata"]
        if rt.namespaced:
            if not ns:
                raise errors.method_not_allowed()
            if meta.get("namespace") and meta["namespace"] != ns:
                raise errors.bad_request(NAMESPACE_MISMATCH)
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise ApiError(
                500, "InternalError", "resourceVersion should not be set on objects to be created"
            )
        shown = meta.get("name") or meta.get("generateName") or ""
        if rt.namespaced:
            self._namespace_precheck(rt, ns, shown)(self.store)
        self._system_fields_for_create(rt, obj)
        self._defaults(rt, obj)
        self._prune(rt, obj)
        admitted = self._admit("CREATE", rt, "", ns, meta.get("name") or "", obj, None, dry)
        if admitted is not None and admitted is not obj:
            obj = admitted
            obj.setdefault("metadata", {})
            self._defaults(rt, obj)
        meta = obj["metadata"]
        self._generation(rt, obj, None)
        generated = not meta.get("name") and bool(meta.get("generateName"))
        for _attempt in range(WRITE_ATTEMPTS):
            if generated:
                prefix = str(meta["generateName"])[: validation.MAX_GENERATED_PREFIX]
                meta["name"] = prefix + "".join(random.choice(NAME_ALPHABET) for _ in range(5))
            self._prepare_kind(rt, obj, None)
            self._validate(rt, obj, None)
            if dry:
                return json_response(201, self._encode(rt, obj), self._warning_headers())
            precheck = self._namespace_precheck(rt, ns, meta["name"]) if rt.namespaced else None
            try:
                stored = self.store.create(rt.group, rt.plural, obj, precheck)
            except ApiError as err:
                if generated and err.reason == "AlreadyExists":
                    continue
                raise
            self._after_write(rt, stored)
            return json_response(201, self._encode(rt, stored), self._warning_headers())
        raise errors.already_exists(rt.group, rt.plural, meta["name"])

    def _update(self, t: Target, req: Request) -> Response:
        rt = t.rt
        body = self._object_body(req)
        dry = self._dry_run(req.query)
        if t.subresource == "scale":
            return self._put_scale(t, body, dry)
        if t.subresource not in ("", "status"):
            raise errors.method_not_allowed()
        self._check_kind(rt, body)
        meta = body["metadata"]
        self._check_identity(t, meta)
        body_rv = str(meta.get("resourceVersion") or "")
        if rt.custom and not body_rv:
            raise errors.invalid(
                rt.group,
                rt.kind,
                t.name,
                [
                    validation.invalid(
                        "metadata.resourceVersion", "0x0", "must be specified for an update"
                    )
                ],
            )
        return self._put(
            t,
            body_rv,
            lambda cur: self._write_update(t, clone(body), cur, dry, conditional=bool(body_rv)),
        )

    def _write_update(
        self, t: Target, new: Obj, cur: Obj, dry: bool, *, conditional: bool
    ) -> Response:
        rt = t.rt
        cur_meta = cur["metadata"]
        meta = new.setdefault("metadata", {})
        uid = meta.get("uid")
        if uid and uid != cur_meta.get("uid"):
            raise errors.conflict(
                rt.group,
                rt.plural,
                t.name,
                f"Precondition failed: UID in precondition: {uid}, "
                f"UID in object meta: {cur_meta.get('uid')}",
            )
        if t.subresource == "status":
            new = _status_update(rt, new, cur)
            meta = new["metadata"]
        elif rt.status or rt.key == ("", "namespaces"):
            if "status" in cur:
                new["status"] = clone(cur["status"])
            else:
                new.pop("status", None)
        for f in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
        ):
            if f in cur_meta:
                meta[f] = cur_meta[f]
            else:
                meta.pop(f, None)
        meta.pop("managedFields", None)
        meta.pop("generation", None)
        meta["resourceVersion"] = cur_meta.get("resourceVersion")
        if "generation" in cur_meta:
            meta["generation"] = cur_meta["generation"]
        self._defaults(rt, new)
        self._prune(rt, new)
        admitted = self._admit("UPDATE", rt, t.subresource, t.namespace, t.name, new, cur, dry)
        if admitted is not None and admitted is not new:
            new = admitted
            meta = new.setdefault("metadata", {})
            self._defaults(rt, new)
            meta["resourceVersion"] = cur_meta.get("resourceVersion")
        # PrepareForUpdate runs after mutating admission: generation counts the final spec
        self._generation(rt, new, cur)
        self._prepare_kind(rt, new, cur)
        self._validate(rt, new, cur)
        headers = self._warning_headers()
        if new == cur:
            # GuaranteedUpdate skips a write that changes nothing: same resourceVersion, no event
            return json_response(200, self._encode(rt, cur), headers)
        if dry:
            return json_response(200, self._encode(rt, new), headers)
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not self._deletion_pending(rt, new)
        ):
            return self._finish_delete(
                t, new, cur, headers, conditional=conditional, respond_object=True
            )
        stored = self._commit(rt, new, cur, conditional=conditional)
        self._after_write(rt, stored)
        return json_response(200, self._encode(rt, stored), headers)

    def _patch(self, t: Target, req: Request) -> Response:
        rt = t.rt
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/apply-patch+yaml":
            raise errors.unsupported_media_type(ctype, PATCH_TYPES[:3])
        if ctype not in PATCH_TYPES[:3] or (
            rt.custom and ctype == PATCH_TYPES[2] and t.subresource != "scale"
        ):
            accepted = [p for p in PATCH_TYPES if not (rt.custom and p == PATCH_TYPES[2])]
            raise errors.unsupported_media_type(ctype, accepted)
        if t.subresource not in ("", "status", "scale"):
            raise errors.method_not_allowed()
        try:
            doc = json.loads(req.body or b"null")
        except (ValueError, UnicodeDecodeError) as bad:
            raise errors.bad_request(f"error decoding patch: {bad}") from None
        if ctype == PATCH_TYPES[0]:
            # the handler decodes strictly into []jsonPatchOp first (fieldValidation Warn, the
            # default); a patch that does not decode is 400, one that does not apply 422
            try:
                doc = patch.decode_json_patch(doc, go_type="[]handlers.jsonPatchOp")
            except patch.PatchFormatError as bad:
                raise errors.bad_request(f"error decoding patch: {bad}") from None
        dry = self._dry_run(req.query)
        explicit_rv = _patch_sets_rv(ctype, doc)
        for _attempt in range(WRITE_ATTEMPTS):
            cur = self._current(t)
            base = self._to_scale(rt, cur) if t.subresource == "scale" else cur
            try:
                if ctype == PATCH_TYPES[0]:
                    patched = patch.json_patch(base, doc)
                elif ctype == PATCH_TYPES[1]:
                    if not isinstance(doc, dict):
                        raise patch.PatchFormatError("merge patch must be a JSON object")
                    patched = patch.merge_patch(clone(base), doc)
                else:
                    patched = patch.strategic_merge(base, doc)
            except patch.PatchFormatError as bad:
                raise errors.bad_request(str(bad)) from None
            except patch.PatchError:
                # NewGenericServerResponse(422, ...): the library's message goes nowhere
                raise ApiError(422, "Invalid", JSON_PATCH_REJECTED, {}) from None
            if not isinstance(patched, dict) or not isinstance(patched.get("metadata", {}), dict):
                raise ApiError(422, "Invalid", "the patched object is not a JSON object")
            patched.setdefault("metadata", {})
            rv = str(patched["metadata"].get("resourceVersion") or "")
            if rv and rv != cur["metadata"].get("resourceVersion"):
                raise errors.stale(rt.group, rt.plural, t.name)
            if t.subresource == "scale":
                try:
                    return self._write_scale(t, cur, patched, dry, conditional=explicit_rv)
                except Retry:
                    continue
            self._check_kind(rt, patched)
            self._check_identity(t, patched["metadata"])
            try:
                return self._write_update(t, patched, cur, dry, conditional=explicit_rv)
            except Retry:
                continue
        raise errors.stale(rt.group, rt.plural, t.name)

    def _bind(self, t: Target, req: Request) -> Response:
        body = self._object_body(req)
        target = body.get("target") or {}
        node = target.get("name")
        if not node:
            raise errors.invalid("", "Binding", t.name, [validation.required("target.name")])
        for _attempt in range(WRITE_ATTEMPTS):
            cur = self._current(t)
            if (cur.get("spec") or {}).get("nodeName"):
                raise errors.conflict(
                    "",
                    "pods",
                    t.name,
                    f'pod {t.name} is already assigned to node "{cur["spec"]["nodeName"]}"',
                )
            new = clone(cur)
            new["spec"]["nodeName"] = node
            conditions = new.setdefault("status", {}).setdefault("conditions", [])
            conditions.append(
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()}
            )
            if self._dry_run(req.query):
                break
            try:
                self.store.update("", "pods", new, cur["metadata"]["resourceVersion"])
            except ApiError as err:
                if err.reason == "Conflict":
                    continue
                raise
            break
        return json_response(
            201,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            },
        )


# What a /status write takes from the stored object, per kind (the status strategies'
# PrepareForUpdate); kinds not listed, custom resources among them, keep everything but status.
STATUS_KEEPS_OLD: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): ("spec", "metadata.ownerReferences"),
    ("", "nodes"): ("spec",),
    ("", "namespaces"): ("spec",),
    ("apps", "deployments"): ("spec", "metadata.labels"),
    ("apps", "statefulsets"): ("spec", "metadata.labels"),
    ("apps", "replicasets"): ("spec", "metadata.labels"),
    ("apiextensions.k8s.io", "customresourcedefinitions"): ("spec",),
}


def _status_update(rt: ResourceType, new: Obj, cur: Obj) -> Obj:
    keeps = None if rt.custom else STATUS_KEEPS_OLD.get(rt.key)
    if keeps is None:
        out: Obj = clone(cur)
        if "status" in new:
            out["status"] = new["status"]
        else:
            out.pop("status", None)
        return out
    for path in keeps:
        *parents, leaf = path.split(".")
        src: Any = cur
        dst: Any = new
        for part in parents:
            src = (src or {}).get(part)
            dst = dst.setdefault(part, {})
        if isinstance(src, dict) and leaf in src:
            dst[leaf] = clone(src[leaf])
        else:
            dst.pop(leaf, None)
    if rt.key == ("", "pods"):
        # the QoS class is fixed at creation; old kubelets dropped it (backfilled upstream too)
        status = new.setdefault("status", {})
        old_qos = (cur.get("status") or {}).get("qosClass")
        if isinstance(status, dict) and not status.get("qosClass") and old_qos:
            status["qosClass"] = old_qos
    return new


def _patch_sets_rv(ctype: str, doc: Any) -> bool:
    if ctype == "application/json-patch+json":
        return isinstance(doc, list) and any(
            isinstance(op, dict)
            and op.get("path") == "/metadata/resourceVersion"
            and op.get("op") in ("add", "replace")
            for op in doc
        )
    return isinstance(doc, dict) and bool((doc.get("metadata") or {}).get("resourceVersion"))
