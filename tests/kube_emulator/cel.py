"""Webhook matchConditions, compiled and evaluated as the API server does, with a real CEL runtime.

The runtime is cel-expr-python, the CEL project's Python binding of cel-cpp (the C++ reference
implementation; the API server runs cel-go, and both pass the CEL conformance suite). Every
expression is type-checked at compile time, as the API server checks it when a webhook
configuration is written.

Kubernetes' dialect as far as it matters to matchConditions: `object` and `oldObject` are dynamic
(no schema; `null` for a DELETE's object and a CREATE's old object), a missing field is an error
unless tested with `has()`, and `request` is the AdmissionRequest. What differs here:

- `request` is a dynamic map holding every AdmissionRequest field (unset strings as ""), where
  the API server declares a typed object: a misspelt field fails at evaluation here, at compile
  time there. Tests that evaluate every branch of an expression catch it either way.
- `authorizer` and Kubernetes' own CEL libraries (quantity, url, regex, lists, the optional-types
  syntax) are not declared; an expression using them does not compile here.
- No cost estimate: the API server also rejects an expression whose estimated cost exceeds its
  budget. Ours are a few comparisons and one `exists` over tolerations.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from cel_expr_python import cel

_ENV = cel.NewEnv(
    variables={"object": cel.Type.DYN, "oldObject": cel.Type.DYN, "request": cel.Type.DYN}
)
# AdmissionRequest's fields with their zero values: the typed request the API server binds.
_REQUEST_DEFAULTS: dict[str, Any] = {
    "uid": "",
    "kind": {"group": "", "version": "", "kind": ""},
    "resource": {"group": "", "version": "", "resource": ""},
    "subResource": "",
    "requestKind": {"group": "", "version": "", "kind": ""},
    "requestResource": {"group": "", "version": "", "resource": ""},
    "requestSubResource": "",
    "name": "",
    "namespace": "",
    "operation": "",
    "userInfo": {"username": "", "uid": "", "groups": [], "extra": {}},
    "object": None,
    "oldObject": None,
    "dryRun": False,
    "options": None,
}

_cache: dict[str, Any] = {}
_lock = threading.Lock()


class CelCompileError(ValueError):
    """The expression does not compile or is not boolean; the API server refuses it (422)."""


@dataclass(frozen=True)
class CelEvalError:
    """An evaluation error: the webhook's failurePolicy decides (Fail refuses, Ignore skips)."""

    message: str


def compile_condition(expression: str) -> Any:
    """The compiled program, cached; CelCompileError with the checker's message otherwise."""
    with _lock:
        program = _cache.get(expression)
    if program is not None:
        return program
    try:
        program = _ENV.compile(expression)
    except RuntimeError as error:
        text = str(error).removeprefix("INVALID_ARGUMENT: ").removesuffix(" [INVALID_ARGUMENT]")
        raise CelCompileError(text) from None
    result = program.return_type()
    if result not in (cel.Type.BOOL, cel.Type.DYN):
        raise CelCompileError(f"must evaluate to bool, not {result.name()}")
    with _lock:
        _cache[expression] = program
    return program


def request_variable(request: dict[str, Any]) -> dict[str, Any]:
    """The `request` variable for an AdmissionRequest as a review carries it (empties omitted)."""
    return {**_REQUEST_DEFAULTS, **request}


def evaluate(expression: str, obj: Any, old: Any, request: dict[str, Any]) -> bool | CelEvalError:
    """The condition's value, or the error the API server would hand to the failurePolicy."""
    program = compile_condition(expression)
    data = {"object": obj, "oldObject": old, "request": request_variable(request)}
    try:
        value = program.eval(data=data)
    except RuntimeError as error:  # a value the binding cannot convert
        return CelEvalError(str(error))
    if value.type() == cel.Type.ERROR:
        return CelEvalError(str(value.value()))
    result = value.value()
    if not isinstance(result, bool):
        return CelEvalError(f"expression must evaluate to bool, got {value.type().name()}")
    return result
