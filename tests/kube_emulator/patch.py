"""The three PATCH formats: JSON merge (RFC 7386), JSON patch (RFC 6902), strategic merge.

Strategic merge follows k8s.io/apimachinery/pkg/util/strategicpatch for the built-in kinds we
serve: lists named in MERGE_KEYS merge element-wise by their key, `finalizers` merges as a set,
every other list is replaced; the directives `$patch` (replace/delete/merge), `$retainKeys`,
`$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` are honoured.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


class PatchError(Exception):
    """The patch does not apply to the object (the API server answers 422)."""


class PatchFormatError(Exception):
    """The patch document itself is malformed (400 BadRequest)."""


def _copy(v: Any) -> Any:
    return json.loads(json.dumps(v))


# -- JSON merge patch -------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return _copy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- JSON patch -------------------------------------------------------------------------------


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise PatchFormatError(f"invalid JSON pointer {path!r}")
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchFormatError(f'JSON pointer must be empty or start with a "/": {path!r}')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
        raise PatchError(f"invalid array index {token!r}")
    idx = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if idx > limit:
        raise PatchError(f"array index out of bounds: {idx}")
    return idx


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    cur = doc
    for tok in tokens[:-1]:
        if isinstance(cur, dict):
            if tok not in cur:
                raise PatchError(f'doc is missing path: "{path}": missing value')
            cur = cur[tok]
        elif isinstance(cur, list):
            cur = cur[_index(cur, tok, allow_end=False)]
        else:
            raise PatchError(f'doc is missing path: "{path}": missing value')
    return cur


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"doc is missing key: {path}: missing value")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, allow_end=False)]
    raise PatchError(f"doc is missing path: {path}")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise PatchError(f'doc is missing path: "{path}": missing value')
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("unable to remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"Unable to remove nonexistent key: {last}: missing value")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, allow_end=False))
    raise PatchError(f'doc is missing path: "{path}": missing value')


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise PatchFormatError(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    doc = _copy(doc)
    for op in ops:
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise PatchFormatError('Unexpected kind: missing or invalid "op"')
        kind, path = op["op"], op.get("path")
        if not isinstance(path, str):
            raise PatchFormatError(f'operation "{kind}" needs a string "path"')
        src = op.get("from")
        if kind in ("move", "copy") and not isinstance(src, str):
            raise PatchFormatError(f'operation "{kind}" needs a string "from"')
        src = str(src)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchFormatError(f"missing value for {kind} operation")
        if kind == "add":
            doc = _add(doc, path, _copy(op["value"]))
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            tokens = _pointer(path)
            if not tokens:
                doc = _copy(op["value"])
                continue
            parent = _parent(doc, tokens, path)
            last = tokens[-1]
            if isinstance(parent, dict):
                if last not in parent:
                    raise PatchError(
                        "replace operation does not apply: doc is missing key: "
                        f"{path}: missing value"
                    )
                parent[last] = _copy(op["value"])
            elif isinstance(parent, list):
                parent[_index(parent, last, allow_end=False)] = _copy(op["value"])
            else:
                raise PatchError(f"replace operation does not apply: doc is missing path: {path}")
        elif kind == "move":
            if path.startswith(src + "/"):
                raise PatchError("move operation can not move a value into one of its children")
            doc, value = _remove(doc, src)
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, _copy(_get(doc, src)))
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchFormatError(f"Unexpected kind: {kind}")
    return doc


# -- strategic merge patch --------------------------------------------------------------------

# patchMergeKey of the list fields of core/v1 and apps/v1 types (context-free: field name → key).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "conditions": "type",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "ownerReferences": "uid",
    "resourceClaims": "name",
    "schedulingGates": "name",
    "addresses": "type",
    "webhooks": "name",
}
# Lists of scalars with patchStrategy "merge": the patch's values are added to the set.
MERGE_SETS = {"finalizers"}

_DIRECTIVE = "$patch"
_RETAIN = "$retainKeys"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
_ORDER = "$setElementOrder/"


def strategic_merge(original: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        raise PatchFormatError("strategic merge patch must be a JSON object")
    return _smp_map(_copy(original) if isinstance(original, dict) else {}, patch)


def _smp_map(orig: dict[str, Any], patch: dict[str, Any]) -> Any:
    directive = patch.get(_DIRECTIVE)
    if directive == "replace":
        return {k: _copy(v) for k, v in patch.items() if k != _DIRECTIVE}
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise PatchFormatError(f"Unknown patch type: {directive}")
    retain = patch.get(_RETAIN)
    result = dict(orig)
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN):
            continue
        if key.startswith(_ORDER):
            if not isinstance(value, list):
                raise PatchFormatError("invalid $setElementOrder list")
            orders[key[len(_ORDER) :]] = value
            continue
        if key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE) :]
            if not isinstance(value, list):
                raise PatchFormatError("invalid $deleteFromPrimitiveList")
            if isinstance(result.get(field), list):
                result[field] = [x for x in result[field] if x not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        cur = result.get(key)
        if isinstance(value, dict):
            merged = _smp_map(cur if isinstance(cur, dict) else {}, value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _smp_list(key, cur if isinstance(cur, list) else [], value)
        else:
            result[key] = value
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _apply_order(field, result[field], order)
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchFormatError("invalid $retainKeys")
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(field: str, orig: list[Any], patch: list[Any]) -> list[Any]:
    if any(isinstance(x, dict) and x.get(_DIRECTIVE) == "replace" for x in patch):
        return [_copy(x) for x in patch if not (isinstance(x, dict) and _DIRECTIVE in x)]
    if field in MERGE_SETS:
        out = list(orig)
        for x in patch:
            if x not in out:
                out.append(x)
        return _element_order(out, patch, orig, lambda x: x)
    key = MERGE_KEYS.get(field)
    if key is None:
        return _copy(patch)  # type: ignore[no-any-return]
    out = [_copy(x) for x in orig]
    deleted: set[Any] = set()
    for item in patch:
        if not isinstance(item, dict):
            raise PatchFormatError(f"list {field} merges by {key!r}: elements must be objects")
        if key not in item:
            raise PatchFormatError(f"map: {item} does not contain declared merge key: {key}")
        idx = next(
            (i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item[key]), None
        )
        if item.get(_DIRECTIVE) == "delete":
            deleted.add(_hashable(item[key]))
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            merged = _smp_map({}, item)
            if merged is not None:
                out.append(merged)
        else:
            merged = _smp_map(out[idx], item)
            if merged is None:
                out.pop(idx)
            else:
                out[idx] = merged

    def ident(x: Any) -> Any:
        return _hashable(x.get(key)) if isinstance(x, dict) else None

    patch_items = [x for x in patch if not (isinstance(x, dict) and _DIRECTIVE in x)]
    server = [x for x in orig if ident(x) not in deleted]
    return _element_order(out, patch_items, server, ident)


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True)


def _element_order(
    merged: list[Any], patch: list[Any], server: list[Any], ident: Callable[[Any], Any]
) -> list[Any]:
    """strategicpatch.normalizeElementOrder without `$setElementOrder`: the elements the patch
    names, in the patch's order, with the server-only ones woven back in where the live list
    had them relative to those (mergeSortedSlice); so a new element comes first, not last."""
    patch_ids = [ident(x) for x in patch]
    server_ids = [ident(x) for x in server]
    named = sorted(
        (x for x in merged if ident(x) in patch_ids), key=lambda x: patch_ids.index(ident(x))
    )
    server_only = [x for x in merged if ident(x) not in patch_ids]

    def position(x: Any) -> int:
        return server_ids.index(ident(x)) if ident(x) in server_ids else -1

    out: list[Any] = []
    while server_only and named:
        left, right = position(server_only[0]), position(named[0])
        out.append(server_only.pop(0) if 0 <= left < right else named.pop(0))
    return out + server_only + named


def _apply_order(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = MERGE_KEYS.get(field)

    def ident(x: Any) -> Any:
        return x.get(key) if key and isinstance(x, dict) else x

    wanted = [ident(o) for o in order]
    listed = [x for w in wanted for x in items if ident(x) == w]
    rest = [x for x in items if ident(x) not in wanted]
    return listed + rest
