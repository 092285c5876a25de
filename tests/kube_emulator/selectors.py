"""Label and field selectors, with the grammar of k8s.io/apimachinery/pkg/labels and /fields.

Label selectors: comma-separated requirements, each one of
`key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (v1,v2)`, `key notin (v1,v2)`,
`key>N`, `key<N`. Keys are qualified names, values label values; whitespace between tokens is
allowed. Field selectors: comma-separated `field=value`, `field==value`, `field!=value` with
backslash escapes, over the fields each kind supports (anything else is 400).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.kube_emulator import validation


class SelectorError(ValueError):
    """An unparsable selector; the REST layer answers 400 BadRequest with the message."""


# -- label selectors --------------------------------------------------------------------------

_SPECIAL = "!=(),<>"
_OPERATOR_TOKENS = ("==", "!=", "=", "<", ">")


def _tokens(text: str) -> list[str]:
    """Lexer of labels.Lexer: identifiers run until whitespace or a special character."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _SPECIAL:
            two = text[i : i + 2]
            if two in ("==", "!="):
                out.append(two)
                i += 2
            else:
                out.append(ch)
                i += 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in _SPECIAL:
                j += 1
            out.append(text[i:j])
            i = j
    return out


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # in, notin, exists, !, =, !=, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("=", "in"):
            return has and value in self.values
        if self.op in ("!=", "notin"):
            return not has or value not in self.values
        if not has:
            return False
        try:
            n = int(str(value))
        except ValueError:
            return False
        bound = int(self.values[0])
        return n > bound if self.op == "gt" else n < bound


def _is_ident(tok: str) -> bool:
    return tok not in _SPECIAL and tok not in ("==", "!=") and tok != ""


def _check_key(key: str) -> None:
    problems = validation.qualified_name_errors(key)
    if problems:
        raise SelectorError(
            f'unable to parse requirement: key: Invalid value: "{key}": {problems[0]}'
        )


def _check_value(value: str) -> None:
    problems = validation.label_value_errors(value)
    if problems:
        raise SelectorError(
            f"unable to parse requirement: values[0][{value}]: "
            f'Invalid value: "{value}": {problems[0]}'
        )


class LabelSelector:
    def __init__(self, requirements: list[Requirement]) -> None:
        self.requirements = requirements

    def matches(self, labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def parse_label_selector(text: str) -> LabelSelector:
    toks = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def expect_ident(what: str) -> str:
        nonlocal i
        if i >= len(toks) or not _is_ident(toks[i]):
            found = toks[i] if i < len(toks) else "end of string"
            raise SelectorError(f"found '{found}', expected: {what}")
        i += 1
        return toks[i - 1]

    while i < len(toks):
        if toks[i] == "!":
            i += 1
            key = expect_ident("identifier after '!'")
            _check_key(key)
            reqs.append(Requirement(key, "!"))
        else:
            key = expect_ident("!, identifier, or 'end of string'")
            _check_key(key)
            if i >= len(toks) or toks[i] == ",":
                reqs.append(Requirement(key, "exists"))
            else:
                op = toks[i]
                i += 1
                if op in ("=", "=="):
                    value = toks[i] if i < len(toks) and _is_ident(toks[i]) else ""
                    i += 1 if value else 0
                    _check_value(value)
                    reqs.append(Requirement(key, "=", (value,)))
                elif op == "!=":
                    value = toks[i] if i < len(toks) and _is_ident(toks[i]) else ""
                    i += 1 if value else 0
                    _check_value(value)
                    reqs.append(Requirement(key, "!=", (value,)))
                elif op in ("in", "notin"):
                    if i >= len(toks) or toks[i] != "(":
                        raise SelectorError(
                            f"found '{toks[i] if i < len(toks) else ''}', expected: '('"
                        )
                    i += 1
                    values: list[str] = []
                    while True:
                        if i >= len(toks):
                            raise SelectorError("found 'end of string', expected: ')'")
                        if toks[i] == ")":
                            i += 1
                            break
                        if toks[i] == ",":
                            # an empty value between commas is the empty string
                            values.append("")
                            i += 1
                            continue
                        values.append(toks[i])
                        i += 1
                        if i < len(toks) and toks[i] == ",":
                            i += 1
                            if i < len(toks) and toks[i] == ")":
                                values.append("")
                    if not values:
                        values.append("")  # parseValues: "()" is the set of the empty string
                    for v in values:
                        _check_value(v)
                    reqs.append(Requirement(key, op, tuple(values)))
                elif op in (">", "<"):
                    value = expect_ident("integer value")
                    try:
                        int(value)
                    except ValueError:
                        raise SelectorError(
                            f"unable to parse requirement: for 'Gt', 'Lt' operators, the value "
                            f"must be an integer: {value}"
                        ) from None
                    reqs.append(Requirement(key, "gt" if op == ">" else "lt", (value,)))
                else:
                    raise SelectorError(f"found '{op}', expected: in, notin, =, ==, !=, gt, lt")
        if i < len(toks):
            if toks[i] != ",":
                raise SelectorError(f"found '{toks[i]}', expected: ',' or 'end of string'")
            i += 1
            if i >= len(toks):
                raise SelectorError("found 'end of string', expected: identifier")
    return LabelSelector(reqs)


def selector_from_label_selector(sel: dict[str, Any] | None) -> LabelSelector:
    """A metav1.LabelSelector (matchLabels, matchExpressions) as a LabelSelector."""
    reqs: list[Requirement] = []
    if not sel:
        return LabelSelector(reqs)
    for k, v in sorted((sel.get("matchLabels") or {}).items()):
        reqs.append(Requirement(k, "=", (str(v),)))
    for expr in sel.get("matchExpressions") or []:
        op = str(expr.get("operator", ""))
        values = tuple(str(v) for v in expr.get("values") or [])
        key = str(expr.get("key", ""))
        mapped = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(op)
        if mapped is None:
            raise SelectorError(f'"{op}" is not a valid label selector operator')
        reqs.append(Requirement(key, mapped, values))
    return LabelSelector(reqs)


def label_selector_string(sel: dict[str, Any] | None) -> str:
    """metav1.FormatLabelSelector-like text (Scale's status.selector)."""
    parts = []
    for r in selector_from_label_selector(sel).requirements:
        if r.op == "=":
            parts.append(f"{r.key}={r.values[0]}")
        elif r.op == "exists":
            parts.append(r.key)
        elif r.op == "!":
            parts.append("!" + r.key)
        else:
            parts.append(f"{r.key} {r.op} ({','.join(sorted(r.values))})")
    return ",".join(parts)


# -- field selectors --------------------------------------------------------------------------


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _dig(obj: dict[str, Any], *path: str) -> Any:
    cur: Any = obj
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


FieldGetter = Callable[[dict[str, Any]], str]

_META_FIELDS: dict[str, FieldGetter] = {
    "metadata.name": lambda o: _text(_dig(o, "metadata", "name")),
    "metadata.namespace": lambda o: _text(_dig(o, "metadata", "namespace")),
}

# Per (group, resource): the fields the API server's field-label conversion accepts.
_KIND_FIELDS: dict[tuple[str, str], dict[str, FieldGetter]] = {
    ("", "pods"): {
        "spec.nodeName": lambda o: _text(_dig(o, "spec", "nodeName")),
        "spec.restartPolicy": lambda o: _text(_dig(o, "spec", "restartPolicy")),
        "spec.schedulerName": lambda o: _text(_dig(o, "spec", "schedulerName")),
        "spec.serviceAccountName": lambda o: _text(_dig(o, "spec", "serviceAccountName")),
        "spec.hostNetwork": lambda o: _text(bool(_dig(o, "spec", "hostNetwork"))),
        "status.phase": lambda o: _text(_dig(o, "status", "phase")),
        "status.podIP": lambda o: _text(_dig(o, "status", "podIP")),
        "status.nominatedNodeName": lambda o: _text(_dig(o, "status", "nominatedNodeName")),
    },
    ("", "nodes"): {
        "spec.unschedulable": lambda o: _text(bool(_dig(o, "spec", "unschedulable"))),
    },
    ("", "namespaces"): {
        "status.phase": lambda o: _text(_dig(o, "status", "phase")),
    },
}


@dataclass(frozen=True)
class FieldTerm:
    getter: FieldGetter
    negate: bool
    value: str

    def matches(self, obj: dict[str, Any]) -> bool:
        return (self.getter(obj) == self.value) != self.negate


class FieldSelector:
    def __init__(self, terms: list[FieldTerm]) -> None:
        self.terms = terms

    def matches(self, obj: dict[str, Any]) -> bool:
        return all(t.matches(obj) for t in self.terms)

    @property
    def empty(self) -> bool:
        return not self.terms


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=!":
                raise SelectorError(f"invalid field selector: invalid escape sequence in {value!r}")
            out.append(value[i + 1])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


_TERM = re.compile(r"^(?P<key>[^=!]*?)(?P<op>!=|==|=)(?P<value>.*)$", re.S)


def parse_field_selector(text: str, group: str, resource: str) -> FieldSelector:
    known = dict(_META_FIELDS)
    known.update(_KIND_FIELDS.get((group, resource), {}))
    terms = []
    for raw in _split_unescaped(text, ","):
        if raw == "":
            continue
        m = _TERM.match(raw)
        if m is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{raw}'")
        key = m.group("key").strip()
        getter = known.get(key)
        if getter is None:
            raise SelectorError(f"field label not supported: {key}")
        terms.append(FieldTerm(getter, m.group("op") == "!=", _unescape(m.group("value"))))
    return FieldSelector(terms)
