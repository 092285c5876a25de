"""Webhook matchConditions, compiled and evaluated as the API server does, with a real CEL runtime.

The runtime is cel-expr-python, the CEL project's Python binding of cel-cpp (the C++ reference
implementation; the API server runs cel-go, and both pass the CEL conformance suite). Every
expression is type-checked at compile time, as the API server checks it when a webhook
configuration is written.

Kubernetes' dialect as far as it matters to matchConditions: `object` and `oldObject` are dynamic
(no schema; `null` for a DELETE's object and a CREATE's old object), and `request` is the
AdmissionRequest as a map without its empty fields (kube-apiserver 1.37 answers `no such key:
subResource` for a request on the object itself): a field that may be empty or absent is an
error unless tested with `has()`. What is not checked here:

- `authorizer` and Kubernetes' own CEL libraries (quantity, url, regex, lists, the optional-types
  syntax) are not declared; an expression using them does not compile here.
- No cost estimate: the API server also rejects an expression whose estimated cost exceeds its
  budget. Ours are a few comparisons and one `exists` over tolerations.
- Error texts are cel-cpp's (`Key not found in map`), not cel-go's (`no such key`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from cel_expr_python import cel

_ENV = cel.NewEnv(
    variables={"object": cel.Type.DYN, "oldObject": cel.Type.DYN, "request": cel.Type.DYN}
)
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


def evaluate(expression: str, obj: Any, old: Any, request: dict[str, Any]) -> bool | CelEvalError:
    """The condition's value, or the error the API server would hand to the failurePolicy."""
    program = compile_condition(expression)
    data = {"object": obj, "oldObject": old, "request": request}
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
