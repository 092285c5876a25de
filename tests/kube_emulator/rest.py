"""The Kubernetes REST protocol over the store: routing, verbs, subresources, watch, discovery.

`Api.handle(Request) -> Response` is pure of HTTP plumbing (server.py owns sockets). The write
path follows the API server's order: decode → check apiVersion/kind/name/namespace → system
fields → defaults → admission (mutating, then validating) → generate the name → validate (422)
→ commit with the resourceVersion read (409 on a lost race for conditional writes; unconditional
writes and patches re-read and retry, like GuaranteedUpdate). Admission webhooks may call back
into this emulator, so nothing here holds the store lock while admitting.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import random
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.kube_emulator import crd as crd_schema
from tests.kube_emulator import errors, patch, selectors, validation
from tests.kube_emulator.admission import AdmissionChain, AdmissionDenied
from tests.kube_emulator.errors import ApiError, Cause
from tests.kube_emulator.resources import (
    BUILTIN_GROUP_ORDER,
    Registry,
    ResourceType,
    types_from_crd,
)
from tests.kube_emulator.store import Obj, Store, clone

VERSION_INFO = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}

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
# DELETE answers with the object for these (ReturnDeletedObject), with a Status otherwise.
RETURNS_DELETED_OBJECT = {("", "pods"), ("", "namespaces")}
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
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
PATCH_TYPES = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
]
WRITE_ATTEMPTS = 8
JSON_PATCH_REJECTED = "the server rejected our request due to an error in our request"
DEFAULT_WATCH_SECONDS = 1800
# A watch that asked for bookmarks gets one after this long without an event, carrying the
# current resourceVersion (the real watch cache sends them about once a minute).
BOOKMARK_INTERVAL_S = 1.0


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    # A watch: chunks to stream (chunked transfer encoding) instead of `body`.
    stream: Iterator[bytes] | None = None


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, dumps(obj), headers=headers or {})


def error_response(err: ApiError) -> Response:
    return Response(err.code, dumps(err.status()), headers=dict(err.headers))


def now_rfc3339(offset: float = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


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


class _Retry(Exception):
    """The object changed between read and commit of an unconditional write: read again."""


@dataclass
class Target:
    rt: ResourceType
    namespace: str
    name: str
    subresource: str
    watch_path: bool


class Api:
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

    # -- entry ---------------------------------------------------------------------------------

    def handle(self, req: Request, alive: Callable[[], bool] = lambda: True) -> Response:
        self._local.admitted = False
        try:
            return self._handle(req, alive)
        except ApiError as err:
            return error_response(err)
        except AdmissionDenied as denied:
            return Response(denied.code, dumps(denied.status()), headers=self._warning_headers())
        except Exception as exc:  # a bug here must still answer like an API server
            traceback.print_exc(file=sys.stderr)
            return error_response(
                ApiError(500, "InternalError", f"Internal error occurred: {exc!r}")
            )

    def _handle(self, req: Request, alive: Callable[[], bool]) -> Response:
        parts = [p for p in req.path.split("/") if p]
        if req.path in ("/healthz", "/livez", "/readyz"):
            return Response(200, b"ok", "text/plain; charset=utf-8")
        if req.path == "/version":
            return json_response(200, VERSION_INFO)
        if not parts or parts[0] not in ("api", "apis"):
            return _page_not_found()
        self._check_accept(req)
        if parts[0] == "api":
            if len(parts) == 1:
                return json_response(200, self._api_versions())
            group, version, rest = "", parts[1], parts[2:]
            if version != "v1":
                return _page_not_found()
        else:
            if len(parts) == 1:
                return json_response(200, self._group_list())
            group = parts[1]
            if len(parts) == 2:
                info = self._group(group)
                return json_response(200, info) if info else _page_not_found()
            version, rest = parts[2], parts[3:]
        if not rest:
            listing = self._resource_list(group, version)
            return json_response(200, listing) if listing else _page_not_found()
        target = self._route(group, version, rest)
        method = req.method
        if method == "GET":
            if target.name and not target.watch_path:
                return self._get(target)
            if target.watch_path or req.query.get("watch") in ("true", "1"):
                return self._watch(target, req.query, alive)
            return self._list(target, req.query)
        if method == "POST":
            if target.name and target.subresource == "binding" and target.rt.key == ("", "pods"):
                return self._bind(target, req)
            if target.name:
                raise errors.method_not_allowed()
            return self._create(target, req)
        if method == "PUT" and target.name:
            return self._update(target, req)
        if method == "PATCH" and target.name:
            return self._patch(target, req)
        if method == "DELETE":
            if target.name:
                return self._delete(target, req)
            return self._delete_collection(target, req)
        raise errors.method_not_allowed()

    def _route(self, group: str, version: str, rest: list[str]) -> Target:
        watch_path = False
        if rest[0] == "watch":
            watch_path, rest = True, rest[1:]
            if not rest:
                raise _not_found_resource()
        rt = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            candidate = self.registry.lookup(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                rt, ns, tail = candidate, rest[1], rest[3:]
        if rt is None:
            found = self.registry.lookup(group, version, rest[0])
            if found is None:
                raise _not_found_resource()
            rt, ns, tail = found, "", rest[1:]
        if len(tail) > 2:
            raise _not_found_resource()
        name = tail[0] if tail else ""
        sub = tail[1] if len(tail) > 1 else ""
        if sub:
            allowed = {"status"} if rt.status else set()
            if rt.scale:
                allowed.add("scale")
            if rt.key == ("", "pods"):
                allowed.add("binding")
            if rt.key == ("", "namespaces"):
                allowed.add("finalize")
            if sub not in allowed or watch_path:
                raise _not_found_resource()
        return Target(rt, ns, name, sub, watch_path)

    def _check_accept(self, req: Request) -> None:
        accept = req.headers.get("accept", "")
        if (
            accept
            and "json" not in accept
            and "*/*" not in accept
            and "application/*" not in accept
        ):
            raise ApiError(
                406,
                "NotAcceptable",
                "only the following media types are accepted: application/json",
            )

    # -- discovery ------------------------------------------------------------------------------

    def _api_versions(self) -> Obj:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address()}
            ],
        }

    def _group_entry(self, group: str, versions: list[str]) -> Obj:
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}

    def _group_list(self) -> Obj:
        groups = self.registry.groups()
        order = [g for g in BUILTIN_GROUP_ORDER if g in groups] + sorted(
            g for g in groups if g not in BUILTIN_GROUP_ORDER
        )
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [self._group_entry(g, groups[g]) for g in order if g],
        }

    def _group(self, group: str) -> Obj | None:
        versions = self.registry.groups().get(group)
        if not group or not versions:
            return None
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group_entry(group, versions)}

    def _resource_list(self, group: str, version: str) -> Obj | None:
        types = [t for t in self.registry.all() if t.group == group and t.version == version]
        if not types:
            return None
        resources = [r for t in sorted(types, key=lambda t: t.plural) for r in t.discovery()]
        gv = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": resources,
        }

    # -- reads ----------------------------------------------------------------------------------

    def _encode(self, rt: ResourceType, obj: Obj) -> Obj:
        if obj.get("apiVersion") != rt.api_version:
            return {**obj, "apiVersion": rt.api_version}
        return obj

    def _current(self, t: Target) -> Obj:
        obj = self.store.peek(t.rt.group, t.rt.plural, t.namespace, t.name)
        if obj is None:
            raise errors.not_found(t.rt.group, t.rt.plural, t.name)
        return obj

    def _get(self, t: Target) -> Response:
        obj = self._current(t)
        if t.subresource == "scale":
            return json_response(200, self._to_scale(t.rt, obj))
        if t.subresource in ("binding", "finalize"):
            raise errors.method_not_allowed()
        return json_response(200, self._encode(t.rt, obj))

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

    def _list(self, t: Target, query: dict[str, str]) -> Response:
        rt = t.rt
        label, fields = self._selectors(rt, query)
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise errors.bad_request(f"invalid limit: {query.get('limit')!r}") from None
        rv, items = self.store.scan(rt.group, rt.plural, t.namespace or None)
        token = query.get("continue")
        if token:
            token_rv, start = _decode_continue(token)
            if token_rv < self.store.compacted_rv:
                raise errors.gone(
                    "The provided continue parameter is too old to display a consistent list "
                    "result. "
                    "You can start a new list without the continue parameter."
                )
            rv = token_rv
            items = items[bisect.bisect_left(items, start, key=_key) :]
        if t.name:
            items = [o for o in items if o["metadata"]["name"] == t.name]
        if not (label.empty and fields.empty):
            items = [
                o for o in items if label.matches(o["metadata"].get("labels")) and fields.matches(o)
            ]
        meta: Obj = {"resourceVersion": str(rv)}
        if limit > 0 and len(items) > limit:
            last = items[limit - 1]
            if label.empty and fields.empty:
                meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
            meta["continue"] = _encode_continue(rv, _key(last) + "\x00")
        body = {
            "kind": rt.list_kind,
            "apiVersion": rt.api_version,
            "metadata": meta,
            "items": [self._encode(rt, o) for o in items],
        }
        return json_response(200, body)

    def _watch(self, t: Target, query: dict[str, str], alive: Callable[[], bool]) -> Response:
        rt = t.rt
        label, fields = self._selectors(rt, query)
        try:
            timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        except ValueError:
            raise errors.bad_request("invalid timeoutSeconds") from None
        raw_rv = query.get("resourceVersion", "")
        store = self.store

        def matches(obj: Obj | None) -> bool:
            if obj is None:
                return False
            meta = obj["metadata"]
            if t.namespace and meta.get("namespace") != t.namespace:
                return False
            if t.name and meta.get("name") != t.name:
                return False
            return label.matches(meta.get("labels")) and fields.matches(obj)

        initial: list[Obj] = []
        with store.lock:
            epoch = store.epoch
            # sendInitialEvents (watch-list) starts with the current state whatever the version
            send_initial = query.get("sendInitialEvents") == "true"
            if raw_rv in ("", "0") or send_initial:
                cursor, objs = store.scan(rt.group, rt.plural, t.namespace or None)
                initial = [o for o in objs if matches(o)]
            else:
                try:
                    cursor = int(raw_rv)
                except ValueError:
                    raise errors.bad_request(f"invalid resource version: {raw_rv!r}") from None
        bookmarks = query.get("allowWatchBookmarks") == "true"

        last_sent = [time.monotonic()]  # when this watch last sent anything (bookmarks)

        def event(etype: str, obj: Obj) -> bytes:
            last_sent[0] = time.monotonic()
            return dumps({"type": etype, "object": self._encode(rt, obj)}) + b"\n"

        def stream() -> Iterator[bytes]:
            nonlocal cursor
            for obj in initial:
                yield event("ADDED", obj)
            if send_initial and bookmarks:
                # the end of the initial state, as client-go's watch-list waits for it
                mark = {
                    "kind": rt.kind,
                    "apiVersion": rt.api_version,
                    "metadata": {
                        "resourceVersion": str(cursor),
                        "annotations": {"k8s.io/initial-events-end": "true"},
                    },
                }
                yield dumps({"type": "BOOKMARK", "object": mark}) + b"\n"
            deadline = time.monotonic() + timeout
            while True:
                events = store.events_after(cursor)
                if events is None:
                    gone = errors.gone(
                        f"too old resource version: {cursor} ({store.compacted_rv + 1})"
                    )
                    yield dumps({"type": "ERROR", "object": gone.status()}) + b"\n"
                    return
                for ev in events:
                    cursor = ev.rv
                    if ev.group != rt.group or ev.resource != rt.plural:
                        continue
                    now_in, was_in = matches(ev.obj), matches(ev.old)
                    if ev.type == "ADDED" and now_in:
                        yield event("ADDED", ev.obj)
                    elif ev.type == "DELETED" and (was_in or now_in):
                        yield event("DELETED", ev.obj)
                    elif ev.type == "MODIFIED":
                        if now_in and was_in:
                            yield event("MODIFIED", ev.obj)
                        elif now_in:
                            yield event("ADDED", ev.obj)
                        elif was_in:
                            yield event("DELETED", ev.obj)
                if bookmarks and time.monotonic() - last_sent[0] >= BOOKMARK_INTERVAL_S:
                    mark = {"kind": rt.kind, "apiVersion": rt.api_version,
                            "metadata": {"resourceVersion": str(cursor)}}  # fmt: skip
                    yield dumps({"type": "BOOKMARK", "object": mark}) + b"\n"
                    last_sent[0] = time.monotonic()
                remaining = deadline - time.monotonic()
                if remaining <= 0 or store.epoch != epoch or self.closing or not alive():
                    return
                store.wait(cursor, epoch, min(remaining, 0.5))

        return Response(200, stream=stream())

    # -- helpers for writes --------------------------------------------------------------------

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

    # -- create ---------------------------------------------------------------------------------

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

    # -- update ---------------------------------------------------------------------------------

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
        for _attempt in range(WRITE_ATTEMPTS):
            cur = self._current(t)
            if body_rv and body_rv != cur["metadata"].get("resourceVersion"):
                raise errors.stale(rt.group, rt.plural, t.name)
            try:
                return self._write_update(t, clone(body), cur, dry, conditional=bool(body_rv))
            except _Retry:
                continue
        raise errors.stale(rt.group, rt.plural, t.name)

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
        try:
            stored = self.store.update(rt.group, rt.plural, new, cur_meta["resourceVersion"])
        except ApiError as err:
            if err.reason == "Conflict" and not conditional:
                raise _Retry() from None
            raise
        self._after_write(rt, stored)
        return json_response(200, self._encode(rt, stored), headers)

    # -- patch ----------------------------------------------------------------------------------

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
                except _Retry:
                    continue
            self._check_kind(rt, patched)
            self._check_identity(t, patched["metadata"])
            try:
                return self._write_update(t, patched, cur, dry, conditional=explicit_rv)
            except _Retry:
                continue
        raise errors.stale(rt.group, rt.plural, t.name)

    # -- scale ----------------------------------------------------------------------------------

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
        rt = t.rt
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
        for _attempt in range(WRITE_ATTEMPTS):
            cur = self._current(t)
            if body_rv and body_rv != cur["metadata"].get("resourceVersion"):
                raise errors.stale(rt.group, rt.plural, t.name)
            try:
                return self._write_scale(t, cur, clone(body), dry, conditional=bool(body_rv))
            except _Retry:
                continue
        raise errors.stale(rt.group, rt.plural, t.name)

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
        try:
            stored = self.store.update(rt.group, rt.plural, new, cur["metadata"]["resourceVersion"])
        except ApiError as err:
            if err.reason == "Conflict" and not conditional:
                raise _Retry() from None
            raise
        return json_response(200, self._to_scale(rt, stored), headers)

    # -- delete ---------------------------------------------------------------------------------

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
            except _Retry:
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
            try:
                stored = self.store.update(rt.group, rt.plural, new, cur_meta["resourceVersion"])
            except ApiError as err:
                if err.reason == "Conflict" and not conditional:
                    raise _Retry() from None
                raise
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
                    raise _Retry() from None
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
            raise _Retry() from None
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
            except (ApiError, _Retry):
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
            except (_Retry, ApiError):
                continue
            deleted.append(obj)
        body = {
            "kind": rt.list_kind,
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(self.store.resource_version)},
            "items": [self._encode(rt, o) for o in deleted],
        }
        return json_response(200, body)

    # -- pods/binding ---------------------------------------------------------------------------

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

    # -- seeding (in-process creates, same rules as over HTTP) ----------------------------------

    def create_object(self, path: str, obj: Obj) -> Obj:
        req = Request("POST", path, {}, {"content-type": "application/json"}, dumps(obj))
        resp = self.handle(req)
        if resp.status != 201:
            raise RuntimeError(f"seed create {path} failed: {resp.status} {resp.body.decode()}")
        return json.loads(resp.body)  # type: ignore[no-any-return]


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
        out = clone(cur)
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


def _check_replicas(name: str, scale: Obj) -> None:
    replicas = (scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.invalid(
            "autoscaling",
            "Scale",
            name,
            [validation.invalid("spec.replicas", replicas, "must be greater than or equal to 0")],
        )


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


def _key(obj: Obj) -> str:
    meta = obj["metadata"]
    ns = meta.get("namespace", "")
    return f"{ns}/{meta['name']}" if ns else meta["name"]


def _encode_continue(rv: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        if data.get("v") != "meta.k8s.io/v1":
            raise ValueError("version")
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise errors.bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion "
            "(version meta.k8s.io/v1)"
        ) from None


def _patch_sets_rv(ctype: str, doc: Any) -> bool:
    if ctype == "application/json-patch+json":
        return isinstance(doc, list) and any(
            isinstance(op, dict)
            and op.get("path") == "/metadata/resourceVersion"
            and op.get("op") in ("add", "replace")
            for op in doc
        )
    return isinstance(doc, dict) and bool((doc.get("metadata") or {}).get("resourceVersion"))


def _page_not_found() -> Response:
    return Response(404, b"404 page not found\n", "text/plain; charset=utf-8")


def _not_found_resource() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


__all__ = ["Api", "Cause", "Request", "Response"]
