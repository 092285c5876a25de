"""DELETE and deletecollection: preconditions, finalizers, graceful deletion of bound pods, and
the namespace controller's cascade done at once."""

from __future__ import annotations

from tests.kube_emulator import errors
from tests.kube_emulator.core import WRITE_ATTEMPTS, ApiCore, Retry, Target, now_rfc3339
from tests.kube_emulator.errors import ApiError
from tests.kube_emulator.messages import Request, Response, json_response
from tests.kube_emulator.resources import ResourceType
from tests.kube_emulator.store import Obj, clone

# DELETE answers with the object for these (ReturnDeletedObject), with a Status otherwise.
RETURNS_DELETED_OBJECT = {("", "pods"), ("", "namespaces")}


class DeleteVerbs(ApiCore):
    """DELETE of one object, of a namespace, of a collection."""

    def _delete_options(self, req: Request) -> Obj:
        opts: Obj = {}
        if req.body.strip():
            body = self._body(req)
            if body is not None:
                if not isinstance(body, dict):
                    raise errors.bad_request("DeleteOptions must be a JSON object")
                opts = body
        if "gracePeriodSeconds" in req.query:
            try:
                opts["gracePeriodSeconds"] = int(req.query["gracePeriodSeconds"])
            except ValueError:
                raise errors.bad_request("invalid gracePeriodSeconds") from None
        for key in ("propagationPolicy", "orphanDependents"):
            if key in req.query:
                opts[key] = req.query[key]
        return opts

    def _delete(self, t: Target, req: Request) -> Response:
        rt = t.rt
        if t.subresource:
            raise errors.method_not_allowed()
        opts = self._delete_options(req)
        dry = self._dry_run(req.query, opts)
        pre = opts.get("preconditions") or {}
        for _attempt in range(WRITE_ATTEMPTS):
            cur = self._current(t)
            cur_meta = cur["metadata"]
            # rest.BeforeDelete names the kind, not the resource, in these two conflicts
            if pre.get("uid") and pre["uid"] != cur_meta.get("uid"):
                raise errors.conflict(
                    rt.group,
                    rt.kind,
                    t.name,
                    f"the UID in the precondition ({pre['uid']}) does not match the UID in "
                    f"record ({cur_meta.get('uid')}). The object might have been deleted and "
                    "then recreated",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != cur_meta.get(
                "resourceVersion"
            ):
                raise errors.conflict(
                    rt.group,
                    rt.kind,
                    t.name,
                    f"the ResourceVersion in the precondition ({pre['resourceVersion']}) does "
                    f"not match the ResourceVersion in record ({cur_meta.get('resourceVersion')})"
                    ". The object might have been modified",
                )
            self._admit("DELETE", rt, "", t.namespace, t.name, None, cur, dry)
            try:
                return self._delete_one(t, cur, opts, dry, conditional=bool(pre))
            except Retry:
                continue
        raise errors.stale(rt.group, rt.plural, t.name)

    def _delete_one(
        self, t: Target, cur: Obj, opts: Obj, dry: bool, *, conditional: bool
    ) -> Response:
        rt = t.rt
        cur_meta = cur["metadata"]
        headers = self._warning_headers()
        grace = 0
        if rt.key == ("", "pods"):
            spec, status = cur.get("spec") or {}, cur.get("status") or {}
            wanted = opts.get("gracePeriodSeconds")
            if wanted is None:
                wanted = spec.get("terminationGracePeriodSeconds", 30)
            grace = int(wanted)
            # CheckGracefulDelete: unscheduled pods and finished pods go at once
            if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
                grace = 0
        finalizers = cur_meta.get("finalizers") or []
        if rt.key == ("", "namespaces"):
            return self._delete_namespace(t, cur, dry, headers)
        if grace > 0 or finalizers:
            existing = cur_meta.get("deletionGracePeriodSeconds")
            if cur_meta.get("deletionTimestamp") and existing is not None and existing <= grace:
                return json_response(200, self._encode(rt, cur), headers)
            new = clone(cur)
            meta = new["metadata"]
            if grace > 0 or not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = now_rfc3339(grace)
            meta["deletionGracePeriodSeconds"] = grace
            if meta.get("generation"):
                meta["generation"] += 1
            if dry:
                return json_response(200, self._encode(rt, new), headers)
            stored = self._commit(rt, new, cur, conditional=conditional)
            return json_response(200, self._encode(rt, stored), headers)
        return self._finish_delete(t, clone(cur), cur, headers, conditional=conditional, dry=dry)

    def _finish_delete(
        self,
        t: Target,
        final: Obj,
        cur: Obj,
        headers: dict[str, str],
        *,
        conditional: bool,
        respond_object: bool = False,
        dry: bool = False,
    ) -> Response:
        rt = t.rt
        if not dry:
            try:
                final = self.store.delete(
                    rt.group, rt.plural, final, cur["metadata"]["resourceVersion"]
                )
            except ApiError as err:
                if err.reason == "Conflict" and not conditional:
                    raise Retry() from None
                raise
            self._after_delete(rt, final)
        if respond_object or rt.key in RETURNS_DELETED_OBJECT:
            return json_response(200, self._encode(rt, final), headers)
        meta = final["metadata"]
        details: Obj = {"name": meta["name"]}
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.plural  # the API server puts the resource here, not the kind
        details["uid"] = meta.get("uid", "")
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }
        return json_response(200, status, headers)

    def _after_delete(self, rt: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            spec = obj.get("spec") or {}
            self.registry.unregister_crd(meta["name"])
            self.store.drop_resource(
                spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
            )
        ns = meta.get("namespace")
        if ns:
            self._finish_namespace(ns)

    def _deletion_pending(self, rt: ResourceType, obj: Obj) -> bool:
        """Whether an object whose last finalizer went must still stay: a bound pod marked for
        graceful deletion waits for its kubelet (there is none); a namespace for its content."""
        meta = obj["metadata"]
        if rt.key == ("", "namespaces"):
            return bool(self.store.objects_in_namespace(meta["name"]))
        if rt.key != ("", "pods"):
            return False
        return (
            bool((obj.get("spec") or {}).get("nodeName"))
            and (meta.get("deletionGracePeriodSeconds") or 0) > 0
        )

    def _delete_namespace(
        self, t: Target, cur: Obj, dry: bool, headers: dict[str, str]
    ) -> Response:
        rt = t.rt
        new = clone(cur)
        meta = new["metadata"]
        if meta.get("deletionTimestamp"):
            return json_response(200, self._encode(rt, cur), headers)
        meta["deletionTimestamp"] = now_rfc3339()
        meta["deletionGracePeriodSeconds"] = 0
        new.setdefault("status", {})["phase"] = "Terminating"
        if dry:
            return json_response(200, self._encode(rt, new), headers)
        try:
            stored = self.store.update(rt.group, rt.plural, new, cur["metadata"]["resourceVersion"])
        except ApiError:
            raise Retry() from None
        # The namespace controller's work, done at once: delete the content (pods without a grace
        # period, there is no kubelet), leave what finalizers hold, drop the namespace when empty.
        name = meta["name"]
        for group, resource, obj in self.store.objects_in_namespace(name):
            child_rt = self.registry.by_resource(group, resource)
            if child_rt is None:
                continue
            child = Target(child_rt, name, obj["metadata"]["name"], "", False)
            try:
                self._delete_one(child, obj, {"gracePeriodSeconds": 0}, False, conditional=False)
            except (ApiError, Retry):
                continue
        self._finish_namespace(name)
        return json_response(200, self._encode(rt, stored), headers)

    def _finish_namespace(self, name: str) -> None:
        ns = self.store.peek("", "namespaces", "", name)
        if (
            ns is None
            or not ns["metadata"].get("deletionTimestamp")
            or ns["metadata"].get("finalizers")
        ):
            return
        if self.store.objects_in_namespace(name):
            return
        try:
            self.store.delete("", "namespaces", clone(ns), ns["metadata"]["resourceVersion"])
        except ApiError:
            return

    def _delete_collection(self, t: Target, req: Request) -> Response:
        rt = t.rt
        label, fields = self._selectors(rt, req.query)
        opts = self._delete_options(req)
        dry = self._dry_run(req.query, opts)
        _rv, items = self.store.scan(rt.group, rt.plural, t.namespace or None)
        deleted = []
        for obj in items:
            if not (label.matches(obj["metadata"].get("labels")) and fields.matches(obj)):
                continue
            child = Target(
                rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], "", False
            )
            self._admit("DELETE", rt, "", child.namespace, child.name, None, obj, dry)
            try:
                self._delete_one(child, obj, opts, dry, conditional=False)
            except (Retry, ApiError):
                continue
            deleted.append(obj)
        body = {
            "kind": rt.list_kind,
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(self.store.resource_version)},
            "items": [self._encode(rt, o) for o in deleted],
        }
        return json_response(200, body)
