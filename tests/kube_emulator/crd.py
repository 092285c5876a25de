"""Custom resources against a CRD's structural schema: pruning, defaulting and validation.

`validate_and_prune` runs the steps the API server runs on a custom resource body, in its
order (k8s.io/apiextensions-apiserver): prune unknown fields (schema/pruning), drop nulls the
schema neither allows nor defaults (schema/defaulting/prunenulls.go), apply `default`s
(schema/defaulting/algorithm.go), then validate with kube-openapi's schema validator and turn
its results into field errors (apiserver/validation.kubeOpenAPIResultToFieldErrors). Every
message is built the way `field.Error.ErrorBody` prints it, so an emulator `Invalid` reads like
a cluster's.

Covered: type (object, array, string, integer, number, boolean), nullable, required, enum,
minimum/maximum (and exclusive), multipleOf, minLength/maxLength, pattern, minItems/maxItems,
format on numbers (int32/int64, checked the way kube-openapi checks it: by type only),
x-kubernetes-int-or-string, x-kubernetes-preserve-unknown-fields, x-kubernetes-embedded-resource,
additionalProperties. Not covered: allOf/anyOf/oneOf/not, min/maxProperties, string formats,
CEL rules (x-kubernetes-validations), list-type checks, ratcheting of unchanged invalid values.
"""

from __future__ import annotations

import copy
import json
import math
import re
from decimal import Decimal
from typing import Any

Schema = dict[str, Any]

# field.ErrorType values (k8s.io/apimachinery/pkg/util/validation/field/errors.go)
INVALID = "FieldValueInvalid"
REQUIRED = "FieldValueRequired"
NOT_SUPPORTED = "FieldValueNotSupported"
TYPE_INVALID = "FieldValueTypeInvalid"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"

_TYPE_TITLES = {
    INVALID: "Invalid value",
    REQUIRED: "Required value",
    NOT_SUPPORTED: "Unsupported value",
    TYPE_INVALID: "Invalid value",
    TOO_LONG: "Too long",
    TOO_MANY: "Too many",
}

# The JSON schema `in` for request bodies: kube-openapi names every place "<path> in body".
_IN = "body"


def validate_and_prune(schema: dict[str, Any], obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Prune, default and validate `obj` in place against a CRD version's openAPIV3Schema.

    Returns the `Invalid` causes ({"reason", "message", "field"}); empty when the object is
    valid. Running it twice gives the same object and causes, so the caller may run it again
    after mutating admission (the API server prunes and validates what webhooks return too).
    """
    _prune(obj, _resource_root(schema))
    _prune_nulls(obj, schema)
    _apply_defaults(obj, schema)
    causes: list[dict[str, Any]] = []
    _validate(obj, schema, "", causes)
    return causes


MAX_INT32 = 2**31 - 1


def scale_causes(obj: dict[str, Any], replica_paths: list[str]) -> list[dict[str, Any]]:
    """customResourceValidator.ValidateScaleSpec/Status: where the scale subresource reads
    replicas (`spec.replicas`-like paths, without the leading dot), a value that is present
    must be an int64 in 0..MaxInt32. The field is the CRD's JSON path, leading dot kept."""
    causes: list[dict[str, Any]] = []
    for path in replica_paths:
        cur: Any = obj
        for part in path.split("."):
            if not isinstance(cur, dict) or part not in cur:
                break
            cur = cur[part]
        else:
            if isinstance(cur, bool) or not isinstance(cur, int):
                value, detail = (
                    0,
                    (
                        f".{path} accessor error: {_go_v(cur)} is of the type {_go_type(cur)}, "
                        "expected int64"
                    ),
                )
            elif cur < 0:
                value, detail = cur, "should be a non-negative integer"
            elif cur > MAX_INT32:
                value, detail = cur, f"should be less than or equal to {MAX_INT32}"
            else:
                continue
            causes.append(
                {"reason": INVALID, "message": _body(INVALID, value, detail), "field": f".{path}"}
            )
    return causes


def _go_v(value: Any) -> str:
    """fmt's %v of a decoded JSON value: go_value but for nil and unquoted strings."""
    if value is None:
        return "<nil>"
    return value if isinstance(value, str) else go_value(value)


def _go_type(value: Any) -> str:
    """fmt's %T of a value encoding/json decoded into interface{}."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    return "float64"


# --- pruning ------------------------------------------------------------------------------


def _resource_root(schema: Schema) -> Schema:
    # pruning.Prune(obj, s, isResourceRoot=true) treats the root like an embedded resource, so
    # apiVersion, kind and metadata survive whatever the schema lists; metadata is cut down to
    # ObjectMeta by its own decoder, not by the schema.
    if schema.get("x-kubernetes-embedded-resource"):
        return schema
    return {**schema, "x-kubernetes-embedded-resource": True}


def _keeps_meta(schema: Schema, key: str, value: Any) -> bool:
    if not schema.get("x-kubernetes-embedded-resource"):
        return False
    if key in ("apiVersion", "kind"):
        return isinstance(value, str)
    return key == "metadata" and isinstance(value, dict)


def _child_schema(schema: Schema | None, key: str) -> tuple[bool, Schema | None]:
    """(known, schema) for an object member: a listed property or additionalProperties."""
    if schema is None:
        return False, None
    props = schema.get("properties") or {}
    if key in props:
        return True, props[key]
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return True, extra
    if extra is True:
        # StructuralOrBool{Bool: true} has no schema: the member stays, its content is pruned
        # as if it had none.
        return True, None
    return False, None


def _prune(value: Any, schema: Schema | None) -> None:
    if schema is not None and schema.get("x-kubernetes-preserve-unknown-fields"):
        _prune_known_only(value, schema)
        return
    if isinstance(value, dict):
        for key in list(value):
            if schema is not None and _keeps_meta(schema, key, value[key]):
                continue
            known, child = _child_schema(schema, key)
            if known:
                _prune(value[key], child)
            else:
                del value[key]
    elif isinstance(value, list):
        items = schema.get("items") if schema is not None else None
        for item in value:
            _prune(item, items)


def _prune_known_only(value: Any, schema: Schema) -> None:
    # x-kubernetes-preserve-unknown-fields keeps unknown members but still prunes inside the
    # members the schema does describe (pruning.skipPrune).
    if isinstance(value, dict):
        for key, member in value.items():
            if _keeps_meta(schema, key, member):
                continue
            known, child = _child_schema(schema, key)
            if known:
                _prune(member, child)
    elif isinstance(value, list):
        items = schema.get("items")
        if items is not None:
            for item in value:
                _prune_known_only(item, items)


# --- nulls and defaults ---------------------------------------------------------------------


def _droppable_null(value: Any, schema: Schema | None) -> bool:
    return (
        value is None
        and schema is not None
        and not schema.get("nullable", False)
        and "default" not in schema
    )


def _prune_nulls(value: Any, schema: Schema | None) -> None:
    # A null where the schema allows none and offers no default is dropped before validation,
    # so `{"image": null}` reads as an absent image
    # (defaulting.PruneNonNullableNullsWithoutDefaults).
    if isinstance(value, dict):
        for key in list(value):
            _, child = _child_schema(schema, key)
            if _droppable_null(value[key], child):
                del value[key]
            else:
                _prune_nulls(value[key], child)
    elif isinstance(value, list):
        items = schema.get("items") if schema is not None else None
        for item in value:
            _prune_nulls(item, items)


def _needs_default(value: Any, present: bool, schema: Schema) -> bool:
    if "default" not in schema:
        return False
    return not present or (value is None and not schema.get("nullable", False))


def _apply_defaults(value: Any, schema: Schema | None) -> None:
    # Parents are defaulted before their members, so a defaulted object gets its members'
    # defaults too (defaulting.Default).
    if schema is None:
        return
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, prop in props.items():
            if _needs_default(value.get(key), key in value, prop):
                value[key] = copy.deepcopy(prop["default"])
        extra = schema.get("additionalProperties")
        for key in list(value):
            if key in props:
                _apply_defaults(value[key], props[key])
            elif isinstance(extra, dict):
                if _needs_default(value[key], True, extra):
                    value[key] = copy.deepcopy(extra["default"])
                _apply_defaults(value[key], extra)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                if _needs_default(item, True, items):
                    value[i] = copy.deepcopy(items["default"])
                _apply_defaults(value[i], items)


# --- validation -----------------------------------------------------------------------------


def _cause(causes: list[dict[str, Any]], reason: str, path: str, body: str) -> None:
    # kubeOpenAPIResultToFieldErrors: the field is the validator's name without its leading dot.
    causes.append({"reason": reason, "message": body, "field": path.removeprefix(".")})


def _body(reason: str, value: Any, detail: str) -> str:
    """field.Error.ErrorBody: the type title, the bad value (if shown) and the detail."""
    title = _TYPE_TITLES[reason]
    text = title if reason in (REQUIRED, TOO_LONG) else f"{title}: {go_value(value)}"
    return f"{text}: {detail}" if detail else text


def _json_type(value: Any) -> tuple[str, str]:
    """(JSON type, format) kube-openapi infers for a value (typeValidator.schemaInfoForType).

    The API server decodes integers as int64 and other numbers as float64.
    """
    if isinstance(value, bool):
        return "boolean", ""
    if isinstance(value, int):
        return "integer", "int64"
    if isinstance(value, float):
        return "number", "float64"
    if isinstance(value, str):
        return "string", ""
    if isinstance(value, list):
        return "array", ""
    return "object", ""


def _schema_types(schema: Schema) -> list[str]:
    if schema.get("x-kubernetes-int-or-string"):
        # ConvertJSONSchemaProps turns int-or-string into the type list [integer, string].
        return ["integer", "string"]
    declared = schema.get("type")
    return [declared] if declared else []


def _type_error(value: Any, schema: Schema, path: str) -> tuple[str, str] | None:
    """(detail, shown value) when the schema rejects the JSON type of `value`.

    Decided as kube-openapi's typeValidator decides; the shown value is the inferred type name.
    """
    types = _schema_types(schema)
    fmt = schema.get("format", "") or ""
    if not types and not fmt:
        return None
    where = f"{path} in {_IN} must be of type"
    if value is None:
        if types and "null" not in types and not schema.get("nullable", False):
            return f"{where} {','.join(types)}: {go_quote('null')}", "null"
        return None
    actual, actual_fmt = _json_type(value)
    # An integral float passes as an integer (2.0 decodes as float64 and is accepted), and any
    # integer passes as a number.
    float_int = (
        actual == "number" and math.isfinite(value) and value == int(value) and "integer" in types
    )
    int_float = actual == "integer" and "number" in types
    scalar_kind = not isinstance(value, (str, list))
    if scalar_kind and fmt and not (actual in types or actual_fmt == fmt or float_int or int_float):
        # With a format, the complaint names the format and the inferred one: a float for an
        # int32 field reads `must be of type int32: "float64"`.
        return f"{where} {fmt}: {go_quote(actual_fmt)}", actual_fmt
    if fmt and not ("number" in types or "integer" in types) and not scalar_kind:
        return None
    if not (actual in types or float_int or int_float):
        return f"{where} {','.join(types)}: {go_quote(actual)}", actual
    return None


def _validate(value: Any, schema: Schema, path: str, causes: list[dict[str, Any]]) -> None:
    type_problem = _type_error(value, schema, path)
    if type_problem is not None:
        detail, shown = type_problem
        _cause(causes, TYPE_INVALID, path, _body(TYPE_INVALID, shown, detail))
    if value is None:
        _check_enum(value, schema, path, causes)
        return
    # As in kube-openapi, the keyword validators that apply follow the value's own kind, not
    # the declared type: a string under `type: integer` gets the type error and nothing else.
    if isinstance(value, str):
        _check_string(value, schema, path, causes)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, schema, path, causes)
    elif isinstance(value, list):
        _check_array(value, schema, path, causes)
    _check_enum(value, schema, path, causes)
    if isinstance(value, dict):
        _check_object(value, schema, path, causes)


def _check_string(value: str, schema: Schema, path: str, causes: list[dict[str, Any]]) -> None:
    # stringValidator stops at its first complaint: maxLength, then minLength, then pattern.
    max_len = schema.get("maxLength")
    if max_len is not None and len(value) > max_len:
        _cause(causes, TOO_LONG, path, _body(TOO_LONG, value, f"may not be longer than {max_len}"))
        return
    min_len = schema.get("minLength")
    if min_len is not None and len(value) < min_len:
        detail = f"{path} in {_IN} should be at least {min_len} chars long"
        _cause(causes, INVALID, path, _body(INVALID, value, detail))
        return
    pattern = schema.get("pattern")
    if pattern is not None and re.search(pattern, value) is None:
        detail = f"{path} in {_IN} should match '{pattern}'"
        _cause(causes, INVALID, path, _body(INVALID, value, detail))


def _bound(limit: float | int, value: float | int) -> str:
    # An integer value is compared with the limit as int64, so the limit prints as one.
    if isinstance(value, int) and float(limit) == int(limit):
        return str(int(limit))
    return go_value(float(limit))


def _check_number(
    value: float | int, schema: Schema, path: str, causes: list[dict[str, Any]]
) -> None:
    multiple = schema.get("multipleOf")
    if multiple:
        quotient = Decimal(repr(value)) / Decimal(repr(multiple))
        if quotient != quotient.to_integral_value():
            detail = f"{path} in {_IN} should be a multiple of {_bound(multiple, value)}"
            _cause(causes, INVALID, path, _body(INVALID, value, detail))
    maximum = schema.get("maximum")
    if maximum is not None:
        exclusive = bool(schema.get("exclusiveMaximum"))
        if value > maximum or (exclusive and value == maximum):
            relation = "less than" if exclusive else "less than or equal to"
            detail = f"{path} in {_IN} should be {relation} {_bound(maximum, value)}"
            _cause(causes, INVALID, path, _body(INVALID, value, detail))
    minimum = schema.get("minimum")
    if minimum is not None:
        exclusive = bool(schema.get("exclusiveMinimum"))
        if value < minimum or (exclusive and value == minimum):
            relation = "greater than" if exclusive else "greater than or equal to"
            detail = f"{path} in {_IN} should be {relation} {_bound(minimum, value)}"
            _cause(causes, INVALID, path, _body(INVALID, value, detail))


def _check_array(value: list[Any], schema: Schema, path: str, causes: list[dict[str, Any]]) -> None:
    # schemaSliceValidator checks the items first, then the item counts.
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _validate(item, items, f"{path}[{i}]", causes)
    min_items = schema.get("minItems")
    if min_items is not None and len(value) < min_items:
        detail = f"{path} in {_IN} should have at least {min_items} items"
        _cause(causes, INVALID, path, _body(INVALID, len(value), detail))
    max_items = schema.get("maxItems")
    if max_items is not None and len(value) > max_items:
        _cause(
            causes,
            TOO_MANY,
            path,
            _body(TOO_MANY, len(value), f"must have at most {max_items} items"),
        )


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality, where 1 == 1.0 but true != 1 (Python would call True == 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _check_enum(value: Any, schema: Schema, path: str, causes: list[dict[str, Any]]) -> None:
    allowed = schema.get("enum")
    if not allowed:
        return
    if value is not None and any(_json_equal(value, option) for option in allowed):
        return
    # Listed the way kubeOpenAPIResultToFieldErrors lists them: strings as they are, anything
    # else as its JSON, each then quoted.
    listed = [opt if isinstance(opt, str) else _compact_json(opt) for opt in allowed]
    detail = "supported values: " + ", ".join(go_quote(v) for v in listed)
    _cause(causes, NOT_SUPPORTED, path, _body(NOT_SUPPORTED, value, detail))


def _check_object(
    value: dict[str, Any], schema: Schema, path: str, causes: list[dict[str, Any]]
) -> None:
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    # Properties in the schema's order (the API server walks a Go map, so its order varies).
    for key, prop in props.items():
        if key in value:
            _validate(value[key], prop, f"{path}.{key}" if path else key, causes)
    if isinstance(extra, dict):
        for key, member in value.items():
            if key not in props:
                _validate(member, extra, f"{path}.{key}", causes)
    for key in schema.get("required") or []:
        if key not in value:
            _cause(causes, REQUIRED, f"{path}.{key}", _body(REQUIRED, None, ""))


# --- Go formatting --------------------------------------------------------------------------


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def go_quote(text: str) -> str:
    """strconv.Quote: double quotes; quote, backslash and non-printable characters escaped."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not ch.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_float(number: float) -> str:
    """fmt's %v for a float64: the shortest digits, exponent form below 1e-4 or from 1e6 up."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    sign, digits, exponent = Decimal(repr(number)).normalize().as_tuple()
    exponent = int(exponent)
    text = "".join(map(str, digits))
    point = len(text) + exponent  # position of the decimal point within `text`
    exp10 = point - 1
    # %v is strconv 'g' with the shortest digits, which takes the exponent form when the
    # exponent is below -4 or at least 6 (so 1e6 prints as 1e+06).
    if exp10 < -4 or exp10 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        body = f"{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    elif point <= 0:
        body = "0." + "0" * (-point) + text
    elif point >= len(text):
        body = text + "0" * (point - len(text))
    else:
        body = text[:point] + "." + text[point:]
    return ("-" if sign else "") + body


def go_value(value: Any) -> str:
    """A bad value as field.Error.ErrorBody prints it: strings quoted, scalars with %v."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return go_quote(value)
    return _compact_json(value)
