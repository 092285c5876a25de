"""The emulator's CRD structural-schema handling: pruning, null dropping, defaults, validation.

Expected messages are the API server's (kube-openapi validation turned into field errors by
apiextensions-apiserver), so an emulator 422 reads like a cluster's.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.kube_emulator.crd import go_float, go_quote, validate_and_prune

# Shaped like the CocoonSet CRD: a typed spec, a free-form status.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["agent"],
            "properties": {
                "agent": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "minLength": 1, "maxLength": 20},
                        "replicas": {
                            "type": "integer",
                            "format": "int32",
                            "minimum": 0,
                            "maximum": 100,
                        },
                        "mode": {"type": "string", "enum": ["clone", "run"], "default": "clone"},
                        "os": {"type": "string", "nullable": True},
                        "cpu": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
                    },
                },
                "toolboxes": {
                    "type": "array",
                    "maxItems": 2,
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {
                                "type": "string",
                                "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                            },
                            "port": {"x-kubernetes-int-or-string": True},
                        },
                    },
                },
                "suspend": {"type": "boolean"},
                "nodePool": {"type": "string", "default": "default"},
                "resources": {
                    "type": "object",
                    "additionalProperties": {"type": "string", "minLength": 1},
                },
                "labels": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                "priority": {"type": "integer", "enum": [1, 2]},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


def cocoonset(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cocoonset.cocoonstack.io/v1",
        "kind": "CocoonSet",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {"agent": {"image": "img"}, **spec},
    }


def agent(**fields: Any) -> dict[str, Any]:
    return {"image": "img", **fields}


def cause(reason: str, field: str, message: str) -> dict[str, str]:
    return {"reason": reason, "message": message, "field": field}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(cocoonset(), [], id="valid"),
        pytest.param(
            cocoonset(agent=agent(replicas=-1)),
            [
                cause(
                    "FieldValueInvalid",
                    "spec.agent.replicas",
                    "Invalid value: -1: spec.agent.replicas in body should be greater than or "
                    "equal to 0",
                )
            ],
            id="minimum",
        ),
        pytest.param(
            cocoonset(agent=agent(replicas=101)),
            [
                cause(
                    "FieldValueInvalid",
                    "spec.agent.replicas",
                    "Invalid value: 101: spec.agent.replicas in body should be less than or "
                    "equal to 100",
                )
            ],
            id="maximum",
        ),
        pytest.param(
            cocoonset(agent=agent(cpu=0)),
            [
                cause(
                    "FieldValueInvalid",
                    "spec.agent.cpu",
                    "Invalid value: 0: spec.agent.cpu in body should be greater than 0",
                )
            ],
            id="exclusive-minimum",
        ),
        pytest.param(
            cocoonset(agent=agent(replicas="3")),
            [
                cause(
                    "FieldValueTypeInvalid",
                    "spec.agent.replicas",
                    'Invalid value: "string": spec.agent.replicas in body must be of type '
                    'integer: "string"',
                )
            ],
            id="type-string-for-integer",
        ),
        pytest.param(
            cocoonset(agent=agent(replicas=1.5)),
            [
                cause(
                    "FieldValueTypeInvalid",
                    "spec.agent.replicas",
                    'Invalid value: "float64": spec.agent.replicas in body must be of type '
                    'int32: "float64"',
                )
            ],
            id="format-names-the-float",
        ),
        # An integral float decodes as float64 and still passes as an integer.
        pytest.param(cocoonset(agent=agent(replicas=2.0)), [], id="integral-float"),
        pytest.param(
            cocoonset(suspend="yes"),
            [
                cause(
                    "FieldValueTypeInvalid",
                    "spec.suspend",
                    'Invalid value: "string": spec.suspend in body must be of type boolean: '
                    '"string"',
                )
            ],
            id="type-boolean",
        ),
        pytest.param(
            cocoonset(agent="img"),
            [
                cause(
                    "FieldValueTypeInvalid",
                    "spec.agent",
                    'Invalid value: "string": spec.agent in body must be of type object: "string"',
                )
            ],
            id="type-object",
        ),
        pytest.param(
            cocoonset(labels="a"),
            [
                cause(
                    "FieldValueTypeInvalid",
                    "spec.labels",
                    'Invalid value: "string": spec.labels in body must be of type array: "string"',
                )
            ],
            id="type-array",
        ),
        pytest.param(
            cocoonset(agent=agent(cpu="1")),
            [
                cause(
                    "FieldValueTypeInvalid",
                    "spec.agent.cpu",
                    'Invalid value: "string": spec.agent.cpu in body must be of type number: '
                    '"string"',
                )
            ],
            id="type-number",
        ),
        pytest.param(cocoonset(agent=agent(cpu=2)), [], id="integer-is-a-number"),
        pytest.param(
            cocoonset(agent={"replicas": 1}),
            [cause("FieldValueRequired", "spec.agent.image", "Required value")],
            id="required",
        ),
        pytest.param(
            {"apiVersion": "cocoonset.cocoonstack.io/v1", "kind": "CocoonSet", "spec": {}},
            [cause("FieldValueRequired", "spec.agent", "Required value")],
            id="required-nested",
        ),
        # A null the schema does not allow is dropped first, so it reads as absent.
        pytest.param(
            cocoonset(agent={"image": None}),
            [cause("FieldValueRequired", "spec.agent.image", "Required value")],
            id="null-dropped",
        ),
        pytest.param(cocoonset(agent=agent(os=None)), [], id="nullable"),
        pytest.param(
            cocoonset(labels=[None]),
            [
                cause(
                    "FieldValueTypeInvalid",
                    "spec.labels[0]",
                    'Invalid value: "null": spec.labels[0] in body must be of type string: "null"',
                )
            ],
            id="null-item",
        ),
        pytest.param(
            cocoonset(agent=agent(mode="Run")),
            [
                cause(
                    "FieldValueNotSupported",
                    "spec.agent.mode",
                    'Unsupported value: "Run": supported values: "clone", "run"',
                )
            ],
            id="enum",
        ),
        pytest.param(
            cocoonset(priority=3),
            [
                cause(
                    "FieldValueNotSupported",
                    "spec.priority",
                    'Unsupported value: 3: supported values: "1", "2"',
                )
            ],
            id="enum-integers",
        ),
        pytest.param(cocoonset(priority=2.0), [], id="enum-numeric-equality"),
        pytest.param(
            cocoonset(agent=agent(image="")),
            [
                cause(
                    "FieldValueInvalid",
                    "spec.agent.image",
                    'Invalid value: "": spec.agent.image in body should be at least 1 chars long',
                )
            ],
            id="min-length",
        ),
        pytest.param(
            cocoonset(agent=agent(image="x" * 21)),
            [cause("FieldValueTooLong", "spec.agent.image", "Too long: may not be longer than 20")],
            id="max-length",
        ),
        pytest.param(
            cocoonset(toolboxes=[{"name": "ok"}, {"name": "Bad_"}]),
            [
                cause(
                    "FieldValueInvalid",
                    "spec.toolboxes[1].name",
                    'Invalid value: "Bad_": spec.toolboxes[1].name in body should match '
                    "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
                )
            ],
            id="pattern",
        ),
        pytest.param(
            cocoonset(toolboxes=[{}, {}, {}]),
            [
                cause(
                    "FieldValueTooMany", "spec.toolboxes", "Too many: 3: must have at most 2 items"
                )
            ],
            id="max-items",
        ),
        pytest.param(
            cocoonset(labels=[]),
            [
                cause(
                    "FieldValueInvalid",
                    "spec.labels",
                    "Invalid value: 0: spec.labels in body should have at least 1 items",
                )
            ],
            id="min-items",
        ),
        pytest.param(cocoonset(toolboxes=[{"port": 8080}, {"port": "http"}]), [], id="int-or-str"),
        pytest.param(
            cocoonset(toolboxes=[{"port": True}]),
            [
                cause(
                    "FieldValueTypeInvalid",
                    "spec.toolboxes[0].port",
                    'Invalid value: "boolean": spec.toolboxes[0].port in body must be of type '
                    'integer,string: "boolean"',
                )
            ],
            id="int-or-string-type",
        ),
        pytest.param(
            cocoonset(resources={"cpu": "1", "memory": ""}),
            [
                cause(
                    "FieldValueInvalid",
                    "spec.resources.memory",
                    'Invalid value: "": spec.resources.memory in body should be at least 1 chars '
                    "long",
                )
            ],
            id="additional-properties",
        ),
        pytest.param(
            cocoonset(agent=agent(replicas=-1, mode="x")),
            [
                cause(
                    "FieldValueInvalid",
                    "spec.agent.replicas",
                    "Invalid value: -1: spec.agent.replicas in body should be greater than or "
                    "equal to 0",
                ),
                cause(
                    "FieldValueNotSupported",
                    "spec.agent.mode",
                    'Unsupported value: "x": supported values: "clone", "run"',
                ),
            ],
            id="several",
        ),
    ],
)
def test_validation(obj: dict[str, Any], expected: list[dict[str, str]]) -> None:
    assert validate_and_prune(SCHEMA, obj) == expected


def test_int32_format_is_not_range_checked() -> None:
    # kube-openapi checks formats on strings only; an integer field is checked by type alone.
    schema = {"type": "object", "properties": {"n": {"type": "integer", "format": "int32"}}}
    assert validate_and_prune(schema, {"n": 2**40}) == []


def test_pruning_drops_unknown_fields_and_keeps_the_envelope() -> None:
    obj = cocoonset(
        agent=agent(backend="firecracker"),
        connType="vnc",
        toolboxes=[{"name": "tb", "hibernatePolicy": "x"}],
        extra={"anything": {"goes": 1}},
    )
    obj["metadata"]["unknownMeta"] = 1  # ObjectMeta is not the schema's to prune
    obj["status"] = {"phase": "Ready", "free": {"form": True}}
    obj["topLevel"] = "dropped"
    assert validate_and_prune(SCHEMA, obj) == []
    assert obj == {
        "apiVersion": "cocoonset.cocoonstack.io/v1",
        "kind": "CocoonSet",
        "metadata": {"name": "demo", "namespace": "default", "unknownMeta": 1},
        "spec": {
            "agent": {"image": "img", "mode": "clone"},
            "toolboxes": [{"name": "tb"}],
            "extra": {"anything": {"goes": 1}},
            "nodePool": "default",
        },
        "status": {"phase": "Ready", "free": {"form": True}},
    }


def test_envelope_survives_a_schema_that_does_not_list_it() -> None:
    schema = {"type": "object", "properties": {"spec": {"type": "object"}}}
    obj = {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "spec": {}, "junk": 1}
    assert validate_and_prune(schema, obj) == []
    assert obj == {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "spec": {}}


def test_preserve_unknown_fields_still_prunes_described_members() -> None:
    schema = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}},
    }
    obj = {"spec": {"a": "x", "b": 1}, "free": {"c": 2}}
    assert validate_and_prune(schema, obj) == []
    assert obj == {"spec": {"a": "x"}, "free": {"c": 2}}


def test_embedded_resource_keeps_its_envelope() -> None:
    schema = {
        "type": "object",
        "properties": {
            "template": {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "properties": {"spec": {"type": "object"}},
            }
        },
    }
    obj = {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"x": 1}, "other": 1}}
    validate_and_prune(schema, obj)
    assert obj == {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"x": 1}}}


def test_defaults_fill_absent_fields_and_nested_defaults() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "default": {},
                "properties": {
                    "replicas": {"type": "integer", "default": 1},
                    "mode": {"type": "string", "default": "run"},
                },
            }
        },
    }
    obj: dict[str, Any] = {"metadata": {"name": "a"}}
    assert validate_and_prune(schema, obj) == []
    assert obj["spec"] == {"replicas": 1, "mode": "run"}
    # A null where a default exists is defaulted, not dropped.
    obj = {"spec": {"replicas": None, "mode": "clone"}}
    validate_and_prune(schema, obj)
    assert obj["spec"] == {"replicas": 1, "mode": "clone"}


def test_running_twice_is_idempotent() -> None:
    obj = cocoonset(agent=agent(replicas=-1, backend="x"), zzz=1)
    first = validate_and_prune(SCHEMA, obj)
    snapshot = copy.deepcopy(obj)
    assert validate_and_prune(SCHEMA, obj) == first
    assert obj == snapshot


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1.5, "1.5"),
        (100.0, "100"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5, "-2.5"),
    ],
)
def test_go_float_formatting(number: float, text: str) -> None:
    assert go_float(number) == text


def test_go_quote() -> None:
    assert go_quote('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\x01é"'
