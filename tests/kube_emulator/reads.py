"""GET of one object and lists: label and field selectors, limit and continue tokens."""

from __future__ import annotations

import base64
import binascii
import bisect
import json

from tests.kube_emulator import errors
from tests.kube_emulator.core import Target
from tests.kube_emulator.messages import Response, json_response
from tests.kube_emulator.scale import ScaleVerbs
from tests.kube_emulator.store import Obj


class ReadVerbs(ScaleVerbs):
    """GET of an object, its /scale, and lists."""

    def _get(self, t: Target) -> Response:
        obj = self._current(t)
        if t.subresource == "scale":
            return json_response(200, self._to_scale(t.rt, obj))
        if t.subresource in ("binding", "finalize"):
            raise errors.method_not_allowed()
        return json_response(200, self._encode(t.rt, obj))

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
