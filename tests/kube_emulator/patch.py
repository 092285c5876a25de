"""The three PATCH formats: JSON merge (RFC 7386), JSON patch (RFC 6902), strategic merge.

JSON patch is the emulator's one engine for it: the REST layer applies PATCH requests with it
and the admission chain the patches mutating webhooks return, as the API server uses one
library for both (see the section below).

Strategic merge follows k8s.io/apimachinery/pkg/util/strategicpatch for the built-in kinds we
serve: lists named in MERGE_KEYS merge element-wise by their key, `finalizers` merges as a set,
every other list is replaced; the directives `$patch` (replace/delete/merge), `$retainKeys`,
`$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` are honoured.
"""

from __future__ import annotations

import json
import re
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
#
# RFC 6902 as the API server applies it: gopkg.in/evanphx/json-patch.v4 (v4.13), for PATCH
# requests and for the patches mutating webhooks return alike. That library is looser than the
# RFC, and clients see the difference, so it is followed rather than the RFC (or the `jsonpatch`
# package, which follows the RFC): negative array indices count from the end, "01" and "+1"
# are indices (strconv.Atoi), `replace` of a missing member adds it, `test` of a missing member
# passes against null and compares numbers as JSON text, a pointer's first token is ignored
# ("a/b" is "/b"), a missing `value` is null, and its error messages are kept word for word.

_MISSING = "missing value"
_BAD_INDEX = "invalid index referenced"
_ATOI = re.compile(r"[+-]?[0-9]+")
_INT64 = 2**63


def decode_json_patch(document: Any, *, go_type: str = "jsonpatch.Patch") -> list[Any]:
    """The operations of a decoded JSON patch document, as Go's json.Unmarshal into `go_type`
    takes them: `null` is no operations, anything but an array of objects (or nulls) raises
    PatchFormatError with Go's message. `go_type` names the Go slice type in that message:
    jsonpatch.DecodePatch decodes into `jsonpatch.Patch` (maps, any member types); the PATCH
    handler first decodes strictly into `[]handlers.jsonPatchOp`, whose op, path and from must
    be strings (or null)."""
    if document is None:
        return []
    if not isinstance(document, list):
        raise PatchFormatError(
            f"json: cannot unmarshal {_go_kind(document)} into Go value of type {go_type}"
        )
    element = "jsonpatch.Operation" if go_type == "jsonpatch.Patch" else go_type.removeprefix("[]")
    for op in document:
        if op is not None and not isinstance(op, dict):
            raise PatchFormatError(
                f"json: cannot unmarshal {_go_kind(op)} into Go value of type {element}"
            )
        if op is not None and element != "jsonpatch.Operation":
            struct = element.rpartition(".")[2]
            for member in ("op", "path", "from"):
                value = op.get(member)
                if value is not None and not isinstance(value, str):
                    raise PatchFormatError(
                        f"json: cannot unmarshal {_go_kind(value)} into Go struct field "
                        f"{struct}.{member} of type string"
                    )
    return document


def json_patch(doc: Any, ops: list[Any]) -> Any:
    """Apply decoded operations (see decode_json_patch) to a copy of `doc` and return it;
    PatchError with evanphx/json-patch's message when one does not apply."""
    root: list[Any] = [_copy(doc)]  # a box, so "" can replace the whole document
    for op in ops:
        kind = op.get("op") if isinstance(op, dict) else None
        handler = _OPS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise PatchError(f"Unexpected kind: {kind if isinstance(kind, str) else 'unknown'}")
        handler(root, op)
    return root[0]


def _go_kind(value: Any) -> str:
    """How Go's encoding/json names a JSON value's type in an UnmarshalTypeError."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _member(op: dict[str, Any], name: str) -> str:
    """Operation.Path / Operation.From: the member as a string, else the error they return."""
    value = op.get(name)
    if value is None:
        missing = (
            "operation missing path field" if name == "path" else "operation, missing from field"
        )
        raise PatchError(f"{missing}: {_MISSING}")
    if not isinstance(value, str):
        raise PatchError(f"json: cannot unmarshal {_go_kind(value)} into Go value of type string")
    return value


def _path(op: dict[str, Any], kind: str, name: str = "path", *, wrap: bool = True) -> str:
    """The op's path (or from). add, remove and copy's path report any decode error as plain
    `missing value` (wrap=False); the others carry the decode error itself."""
    try:
        return _member(op, name)
    except PatchError as err:
        why = str(err) if wrap else _MISSING
        raise PatchError(f"{kind} operation failed to decode {name}: {why}") from None


def _unescape(token: str) -> str:
    # strings.NewReplacer("~1", "/", "~0", "~"): one pass, left to right
    return re.sub(r"~[01]", lambda m: "/" if m.group() == "~1" else "~", token)


def _find(root: list[Any], pointer: str) -> tuple[Any, str] | None:
    """findObject: the container holding the pointer's last token, and that token; None if
    absent. The first token (before the first "/") is never looked at."""
    tokens = pointer.split("/")
    if len(tokens) < 2:
        return None
    node = root[0]
    for token in tokens[1:-1]:
        try:
            node = _get(node, _unescape(token))
        except PatchError:
            return None
        if not isinstance(node, (dict, list)):
            return None  # null, absent or a scalar
    return node, _unescape(tokens[-1])


def _atoi(token: str) -> int:
    if not _ATOI.fullmatch(token):
        raise PatchError(f"strconv.Atoi: parsing {json.dumps(token)}: invalid syntax")
    value = int(token)
    if not -_INT64 <= value < _INT64:
        raise PatchError(f"strconv.Atoi: parsing {json.dumps(token)}: value out of range")
    return value


def _invalid_index(idx: int) -> PatchError:
    return PatchError(f"Unable to access invalid index: {idx}: {_BAD_INDEX}")


def _get(container: Any, key: str) -> Any:
    """A member (None when absent, as for null) or an element."""
    if isinstance(container, dict):
        return container.get(key)
    idx = _atoi(key)
    if idx < -len(container):
        raise _invalid_index(idx)
    if idx < 0:
        idx += len(container)
    if idx >= len(container):
        raise _invalid_index(idx)
    return container[idx]


def _add(container: Any, key: str, value: Any) -> None:
    if isinstance(container, dict):
        container[key] = value
        return
    if key == "-":
        container.append(value)
        return
    try:
        idx = _atoi(key)
    except PatchError as err:
        raise PatchError(f"value was not a proper array index: '{key}': {err}") from None
    size = len(container) + 1
    if idx >= size or idx < -size:
        raise _invalid_index(idx)
    container.insert(idx + size if idx < 0 else idx, value)


def _remove(container: Any, key: str) -> None:
    if isinstance(container, dict):
        if key not in container:
            raise PatchError(f"Unable to remove nonexistent key: {key}: {_MISSING}")
        del container[key]
        return
    idx = _atoi(key)
    if idx >= len(container) or idx < -len(container):
        raise _invalid_index(idx)
    del container[idx]


def _op_add(root: list[Any], op: dict[str, Any]) -> None:
    path = _path(op, "add", wrap=False)
    found = _find(root, path)
    if found is None:
        raise PatchError(f'add operation does not apply: doc is missing path: "{path}": {_MISSING}')
    try:
        _add(*found, _copy(op.get("value")))
    except PatchError as err:
        raise PatchError(f"error in add for path: '{path}': {err}") from None


def _op_remove(root: list[Any], op: dict[str, Any]) -> None:
    path = _path(op, "remove", wrap=False)
    found = _find(root, path)
    if found is None:
        raise PatchError(
            f'remove operation does not apply: doc is missing path: "{path}": {_MISSING}'
        )
    try:
        _remove(*found)
    except PatchError as err:
        raise PatchError(f"error in remove for path: '{path}': {err}") from None


def _op_replace(root: list[Any], op: dict[str, Any]) -> None:
    path = _path(op, "replace")
    value = _copy(op.get("value"))
    if path == "":
        if not isinstance(value, (dict, list)):
            # fmt.Errorf("...: %w", err) with err nil, as the library writes it
            raise PatchError("replace operation value must be object or array: %!w(<nil>)")
        root[0] = value
        return
    found = _find(root, path)
    if found is None:
        raise PatchError(
            f"replace operation does not apply: doc is missing path: {path}: {_MISSING}"
        )
    container, key = found
    try:
        _get(container, key)  # only an array can miss: a missing member is simply set
    except PatchError:
        raise PatchError(
            f"replace operation does not apply: doc is missing key: {path}: {_MISSING}"
        ) from None
    if isinstance(container, dict):
        container[key] = value
    else:
        idx = _atoi(key)
        container[idx if idx >= 0 else idx + len(container)] = value


def _op_move(root: list[Any], op: dict[str, Any]) -> None:
    container, key, _ = _source(root, op, "move")
    try:  # the library names the last token here, not the path
        value = _get(container, key)
        _remove(container, key)
    except PatchError as err:
        raise PatchError(f"error in move for path: '{key}': {err}") from None
    target, path = _destination(root, op, "move")
    try:
        _add(*target, value)
    except PatchError as err:
        raise PatchError(f"error in move for path: '{path}': {err}") from None


def _op_copy(root: list[Any], op: dict[str, Any]) -> None:
    container, key, source = _source(root, op, "copy")
    try:
        value = _copy(_get(container, key))
    except PatchError as err:
        raise PatchError(f"error in copy for from: '{source}': {err}") from None
    target, _ = _destination(root, op, "copy")
    try:
        _add(*target, value)
    except PatchError as err:
        raise PatchError(f"error while adding value during copy: {err}") from None


def _source(root: list[Any], op: dict[str, Any], kind: str) -> tuple[Any, str, str]:
    """Where move's or copy's `from` points: the container, its token, and `from` itself."""
    source = _path(op, kind, "from")
    found = _find(root, source)
    if found is None:
        raise PatchError(
            f"{kind} operation does not apply: doc is missing from path: {source}: {_MISSING}"
        )
    return found[0], found[1], source


def _destination(root: list[Any], op: dict[str, Any], kind: str) -> tuple[tuple[Any, str], str]:
    """Where move's or copy's `path` points, and that path."""
    path = _path(op, kind, wrap=kind == "move")
    target = _find(root, path)
    if target is None:
        raise PatchError(
            f"{kind} operation does not apply: doc is missing destination path: {path}: {_MISSING}"
        )
    return target, path


def _op_test(root: list[Any], op: dict[str, Any]) -> None:
    path = _path(op, "test")
    failed = PatchError(f"testing value {path} failed: test failed")
    if path == "":
        if "value" not in op or not _same(root[0], op["value"]):
            raise failed
        return
    found = _find(root, path)
    if found is None:
        raise PatchError(f"test operation does not apply: is missing path: {path}: {_MISSING}")
    try:
        actual = _get(*found)
    except PatchError as err:
        raise PatchError(f"error in test for path: '{path}': {err}") from None
    if actual is None:  # absent or null: passes against a missing or null value
        if op.get("value") is not None:
            raise failed
    elif "value" not in op or not _same(actual, op["value"]):
        raise failed


def _same(actual: Any, expected: Any) -> bool:
    """lazyNode.equal: scalars compare as JSON text (1 and 1.0 differ), objects member by
    member, arrays element by element. Where the library dereferences nil (a null array
    element, or `test` of the whole document without a value) this is simply unequal."""
    if isinstance(actual, dict):
        if not isinstance(expected, dict) or len(actual) != len(expected):
            return False
        for key, value in actual.items():
            if key not in expected or (value is None) != (expected[key] is None):
                return False
            if value is not None and not _same(value, expected[key]):
                return False
        return True
    if isinstance(actual, list):
        if not isinstance(expected, list) or len(actual) != len(expected):
            return False
        return all(
            a is not None and e is not None and _same(a, e)
            for a, e in zip(actual, expected, strict=True)
        )
    return _scalar_text(actual) == json.dumps(expected, ensure_ascii=False)


def _scalar_text(value: Any) -> str:
    # The document side is what Go marshalled: a whole float64 prints without ".0".
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return json.dumps(value, ensure_ascii=False)


_OPS: dict[str, Callable[[list[Any], dict[str, Any]], None]] = {
    "add": _op_add,
    "remove": _op_remove,
    "replace": _op_replace,
    "move": _op_move,
    "copy": _op_copy,
    "test": _op_test,
}

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
