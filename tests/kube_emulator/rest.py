"""The Kubernetes REST protocol over the store: `Api` routes each request to its verb.

`Api.handle(Request) -> Response` is pure of HTTP plumbing (server.py owns sockets). The write
path follows the API server's order: decode → check apiVersion/kind/name/namespace → system
fields → defaults → admission (mutating, then validating) → generate the name → validate (422)
→ commit with the resourceVersion read (409 on a lost race for conditional writes; unconditional
writes and patches re-read and retry, like GuaranteedUpdate). Admission webhooks may call back
into this emulator, so nothing here holds the store lock while admitting.

The verbs live by concern, each a mixin over `core.ApiCore` (the state, the object pipeline,
the admission hooks): writes.py (create, update, patch, binding), scale.py, deletes.py,
reads.py (get, list), watch.py, discovery.py; messages.py has Request and Response.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable

from tests.kube_emulator import errors
from tests.kube_emulator.admission import AdmissionDenied
from tests.kube_emulator.core import Target
from tests.kube_emulator.discovery import VERSION_INFO, DiscoveryVerbs
from tests.kube_emulator.errors import ApiError, Cause
from tests.kube_emulator.messages import Request, Response, dumps, error_response, json_response
from tests.kube_emulator.reads import ReadVerbs
from tests.kube_emulator.store import Obj
from tests.kube_emulator.watch import WatchVerbs
from tests.kube_emulator.writes import WriteVerbs


class Api(WriteVerbs, ReadVerbs, WatchVerbs, DiscoveryVerbs):
    """The API server: routes a request to its verb."""

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

    def create_object(self, path: str, obj: Obj) -> Obj:
        req = Request("POST", path, {}, {"content-type": "application/json"}, dumps(obj))
        resp = self.handle(req)
        if resp.status != 201:
            raise RuntimeError(f"seed create {path} failed: {resp.status} {resp.body.decode()}")
        return json.loads(resp.body)  # type: ignore[no-any-return]


def _page_not_found() -> Response:
    return Response(404, b"404 page not found\n", "text/plain; charset=utf-8")


def _not_found_resource() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


__all__ = ["Api", "Cause", "Request", "Response"]
