"""The state and the object pipeline every verb shares.

`ApiCore` holds the store, the registry and the admission chain, and the steps the write path
runs in the API server's order: decode the body and check apiVersion/kind/name/namespace, set
system fields, default, prune, admit (the chain, and the Warning headers it leaves), count
the generation, validate (422), and what particular kinds do on write.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.kube_emulator import crd as crd_schema
from tests.kube_emulator import errors, selectors, validation
from tests.kube_emulator.admission import AdmissionChain
from tests.kube_emulator.messages import Request, Response
from tests.kube_emulator.resources import Registry, ResourceType, types_from_crd
from tests.kube_emulator.store import Obj, Store

# The writes that go through the admission chain (SPEC 14); custom resources always do.
ADMITTED = {("", "pods"), ("apps", "deployments"), ("apps", "statefulsets")}
# Kinds whose metadata.generation counts spec changes, and the fields that make up the "spec".
GENERATION_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("apps", "deployments"): ("spec",),
    ("apps", "statefulsets"): ("spec",),
    ("apps", "replicasets"): ("spec",),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): ("webhooks",),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): ("webhooks",),
    ("apiextensions.k8s.io", "customresourcedefinitions"): ("spec",),
}
# PrepareForCreate of these kinds resets status; nodes (kubelets register with status) keep it.
RESETS_STATUS_ON_CREATE = {
    ("", "pods"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "replicasets"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
}
NAMESPACE_MISMATCH = (
    "the namespace of the provided object does not match the namespace sent on the request"
)
WRITE_ATTEMPTS = 8


def now_rfc3339(offset: float = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


class Retry(Exception):
    """The object changed between read and commit of an unconditional write: read again."""


@dataclass
class Target:
    rt: ResourceType
    namespace: str
    name: str
    subresource: str
    watch_path: bool


class ApiCore:
    """The emulated API server's state and the steps its verbs share."""

    def __init__(
        self,
        store: Store,
        chain: AdmissionChain | None = None,
        *,
        server_address: Callable[[], str] = lambda: "127.0.0.1",
    ) -> None:
        self.store = store
        self.registry: Registry = store.registry
        self.chain = chain
        self.server_address = server_address
        # Watches end when this is set (server shutdown); tests never need more than the epoch.
        self.closing = False
        self._local = threading.local()

    def _encode(self, rt: ResourceType, obj: Obj) -> Obj:
        if obj.get("apiVersion") != rt.api_version:
            return {**obj, "apiVersion": rt.api_version}
        return obj

    def _current(self, t: Target) -> Obj:
        obj = self.store.peek(t.rt.group, t.rt.plural, t.namespace, t.name)
        if obj is None:
            raise errors.not_found(t.rt.group, t.rt.plural, t.name)
        return obj

    def _selectors(
        self, rt: ResourceType, query: dict[str, str]
    ) -> tuple[selectors.LabelSelector, selectors.FieldSelector]:
        try:
            label = selectors.parse_label_selector(query.get("labelSelector", ""))
            fields = selectors.parse_field_selector(
                query.get("fieldSelector", ""), rt.group, rt.plural
            )
        except selectors.SelectorError as bad:
            raise errors.bad_request(str(bad)) from None
        return label, fields

    def _body(self, req: Request) -> Any:
        ctype = req.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype not in ("application/json", "", "*/*"):
            # protobuf, CBOR and YAML bodies are out of scope: the emulator speaks JSON only
            raise errors.unsupported_media_type(ctype, ["application/json"])
        try:
            return json.loads(req.body or b"null")
        except (ValueError, UnicodeDecodeError) as bad:
            raise errors.bad_request(
                f"couldn't get version/kind; json parse error: {bad}"
            ) from None

    def _object_body(self, req: Request) -> Obj:
        body = self._body(req)
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        meta = body.get("metadata")
        if meta is None:
            body["metadata"] = {}
        elif not isinstance(meta, dict):
            raise errors.bad_request("metadata must be a JSON object")
        return body

    def _put(self, t: Target, body_rv: str, write: Callable[[Obj], Response]) -> Response:
        """A PUT as GuaranteedUpdate runs it: read, refuse a stale body resourceVersion (409),
        write; an unconditional write that lost a race to another (Retry) reads again."""
        for _attempt in range(WRITE_ATTEMPTS):
            cur = self._current(t)
            if body_rv and body_rv != cur["metadata"].get("resourceVersion"):
                raise errors.stale(t.rt.group, t.rt.plural, t.name)
            try:
                return write(cur)
            except Retry:
                continue
        raise errors.stale(t.rt.group, t.rt.plural, t.name)

    def _commit(self, rt: ResourceType, new: Obj, cur: Obj, *, conditional: bool) -> Obj:
        """Store `new` over `cur`, guarded by `cur`'s resourceVersion. A write the client made
        unconditional that lost a race to another raises Retry: it reads again (`_put`)."""
        try:
            return self.store.update(rt.group, rt.plural, new, cur["metadata"]["resourceVersion"])
        except errors.ApiError as err:
            if err.reason == "Conflict" and not conditional:
                raise Retry() from None
            raise

    def _check_kind(self, rt: ResourceType, obj: Obj) -> None:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        storage = rt.storage_version or rt.version
        stored_as = f"{rt.group}/{storage}" if rt.group else storage
        if api_version and api_version not in (rt.api_version, stored_as):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected "
                f"API version ({rt.api_version})"
            )
        if kind and kind != rt.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        obj["apiVersion"] = stored_as
        obj["kind"] = rt.kind

    def _check_identity(self, t: Target, meta: Obj) -> None:
        if meta.get("name") != t.name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name', '')}) does not match "
                f"the name on the URL ({t.name})"
            )
        if t.rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != t.namespace:
                raise errors.bad_request(NAMESPACE_MISMATCH)
            meta["namespace"] = t.namespace
        else:
            meta.pop("namespace", None)

    def _dry_run(self, query: dict[str, str], options: Obj | None = None) -> bool:
        values = [query["dryRun"]] if "dryRun" in query else []
        if options and options.get("dryRun"):
            values += list(options["dryRun"])
        for v in values:
            if v != "All":
                raise errors.bad_request(f'Invalid value: "{v}": supported values: "All"')
        return bool(values)

    def _namespace_precheck(
        self, rt: ResourceType, namespace: str, name: str
    ) -> Callable[[Store], None]:
        def check(store: Store) -> None:
            ns = store.peek("", "namespaces", "", namespace)
            if ns is None:
                raise errors.not_found("", "namespaces", namespace)
            if ns["metadata"].get("deletionTimestamp"):
                err = errors.forbidden(
                    rt.group,
                    rt.plural,
                    name,
                    f"unable to create new content in namespace {namespace} "
                    "because it is being terminated",
                )
                err.details = dict(err.details or {})
                err.details["causes"] = [
                    {
                        "reason": "NamespaceTerminating",
                        "message": f"namespace {namespace} is being terminated",
                        "field": "metadata.namespace",
                    }
                ]
                raise err

        return check

    def _admit(
        self,
        operation: str,
        rt: ResourceType,
        sub: str,
        ns: str,
        name: str,
        obj: Obj | None,
        old: Obj | None,
        dry: bool,
        kind: str = "",
    ) -> Obj | None:
        if self.chain is None or not (rt.custom or rt.key in ADMITTED):
            return obj
        if not self._has_webhooks():
            return obj
        self._local.admitted = True
        return self.chain.admit(
            operation=operation,
            group=rt.group,
            version=rt.version,
            kind=kind or rt.kind,
            resource=rt.plural,
            subresource=sub,
            namespace=ns,
            name=name,
            obj=obj,
            old=old,
            dry_run=dry,
        )

    def _has_webhooks(self) -> bool:
        group = "admissionregistration.k8s.io"
        return bool(
            self.store.scan(group, "mutatingwebhookconfigurations")[1]
            or self.store.scan(group, "validatingwebhookconfigurations")[1]
        )

    def _warning_headers(self) -> dict[str, str]:
        if self.chain is None or not getattr(self._local, "admitted", False):
            return {}
        warnings = self.chain.last_warnings
        if not warnings:
            return {}
        # one header line per warning: RFC 7234 warn-code 299, agent "-", quoted text
        return {
            "Warning": ", ".join(
                '299 - "{}"'.format(w.replace("\\", "\\\\").replace('"', '\\"')) for w in warnings
            )
        }

    def _defaults(self, rt: ResourceType, obj: Obj) -> None:
        fn = validation.DEFAULTERS.get(rt.key)
        if fn is not None:
            fn(obj)

    def default(self, group: str, resource: str, obj: Obj) -> None:
        """Re-apply defaults to an object a mutating webhook patched (the chain's defaulter)."""
        fn = validation.DEFAULTERS.get((group, resource))
        if fn is not None:
            fn(obj)

    def _validate(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        meta = obj["metadata"]
        causes = validation.validate_object_meta(
            meta, namespaced=rt.namespaced, name_check=validation.name_check(rt.group, rt.plural)
        )
        if old is not None:
            causes += validation.validate_meta_update(obj, old)
        check = validation.VALIDATORS.get(rt.key)
        if check is not None:
            causes += check(obj, old)
        if rt.custom and rt.schema is not None:
            causes += errors.causes_from_dicts(self._schema_check(rt, obj))
        if rt.custom and rt.scale:
            paths = [rt.scale_spec_path, rt.scale_status_path]
            causes += errors.causes_from_dicts(crd_schema.scale_causes(obj, paths))
        if causes:
            raise errors.invalid(
                rt.group, rt.kind, meta.get("name") or meta.get("generateName", ""), causes
            )

    def _prune(self, rt: ResourceType, obj: Obj) -> None:
        """Custom resources are pruned and defaulted as they are decoded, before admission sees
        them; their validation errors count only after admission (in `_validate`)."""
        if rt.custom and rt.schema is not None:
            self._schema_check(rt, obj)

    def _schema_check(self, rt: ResourceType, obj: Obj) -> list[dict[str, Any]]:
        # apiVersion, kind and metadata are the API server's, never the schema's to prune
        keep: Obj = {k: obj[k] for k in ("apiVersion", "kind", "metadata") if k in obj}
        causes = crd_schema.validate_and_prune(rt.schema or {}, obj)
        obj.update(keep)
        return causes

    def _generation(self, rt: ResourceType, new: Obj, old: Obj | None) -> None:
        fields = GENERATION_FIELDS.get(rt.key)
        meta = new["metadata"]
        if fields is None and not rt.custom:
            return
        if old is None:
            meta["generation"] = 1
            return
        old_gen = old["metadata"].get("generation") or 1
        if fields is None:  # a custom resource: everything but metadata (and a subresource status)
            skip = {"metadata", "apiVersion", "kind"} | ({"status"} if rt.status else set())
            changed = {k: v for k, v in new.items() if k not in skip} != {
                k: v for k, v in old.items() if k not in skip
            }
        else:
            changed = any(new.get(f) != old.get(f) for f in fields)
        meta["generation"] = old_gen + 1 if changed else old_gen

    def _system_fields_for_create(self, rt: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        for f in (
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
            "generation",
        ):
            meta.pop(f, None)
        if rt.key in RESETS_STATUS_ON_CREATE or (rt.custom and rt.status):
            obj.pop("status", None)
        if rt.key == ("", "pods"):
            obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj.get("spec") or {})}

    def _prepare_kind(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        """Server-side effects of particular kinds (the parts a controller would add at once)."""
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            spec = obj.get("spec") or {}
            names = dict(spec.get("names") or {})
            storage = [v.get("name") for v in spec.get("versions") or [] if v.get("storage")]
            stored = list((old or {}).get("status", {}).get("storedVersions") or [])
            for v in storage:
                if v not in stored:
                    stored.append(v)
            obj["status"] = {
                "conditions": [
                    {
                        "type": "NamesAccepted",
                        "status": "True",
                        "reason": "NoConflicts",
                        "message": "no conflicts found",
                        "lastTransitionTime": now_rfc3339(),
                    },
                    {
                        "type": "Established",
                        "status": "True",
                        "reason": "InitialNamesAccepted",
                        "message": "the initial names have been accepted",
                        "lastTransitionTime": now_rfc3339(),
                    },
                ],
                "acceptedNames": names,
                "storedVersions": stored,
            }
            if old is not None and old.get("status", {}).get("conditions"):
                obj["status"]["conditions"] = old["status"]["conditions"]

    def _after_write(self, rt: ResourceType, obj: Obj) -> None:
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self.registry.register_crd(obj["metadata"]["name"], types_from_crd(obj))


def _qos_class(spec: Obj) -> str:
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    requests_any = False
    guaranteed = bool(containers)
    for c in containers:
        res = (c or {}).get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            requests_any = True
        for r in ("cpu", "memory"):
            if r not in lim or req.get(r, lim.get(r)) != lim.get(r):
                guaranteed = False
    if not requests_any:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
