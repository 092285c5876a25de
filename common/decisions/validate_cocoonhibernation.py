"""CocoonHibernation admission (issue 15): one CocoonHibernation per pod, named after it.

Two CocoonHibernations for one pod make the operator flip the VM between their desires. The
name rule makes a second one collide on the API server's own name uniqueness; the LIST of the
namespace (done by the caller) catches the ones stored before the rule existed. Pure: the
caller hands over the operation, the object and the listed items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import Field, ValidationError

from common.decisions.validate_cocoonset import (
    OBJECT_MISSING,
    JsonView,
    decode_reason,
    rfc1123_label_errors,
)
from common.decode_errors import json_type
from common.gocompat import go_quote
from common.verdict import Decision, Verdict, allow, deny

DECODE_PREFIX: Final = "cocoon-webhook: decode CocoonHibernation: "
LIST_FAILED_PREFIX: Final = "cocoon-webhook: cannot verify podRef uniqueness: "
NO_NAMESPACE: Final = "the review names no namespace"


class _PodRef(JsonView):
    name: str = ""


class _Spec(JsonView):
    pod_ref: _PodRef = Field(default_factory=_PodRef)
    desire: str = ""


class _Metadata(JsonView):
    name: str = ""
    namespace: str = ""


class _Object(JsonView):
    metadata: _Metadata = Field(default_factory=_Metadata)
    spec: _Spec = Field(default_factory=_Spec)


@dataclass(frozen=True)
class Hibernation:
    """What the uniqueness check needs of the CocoonHibernation being created."""

    name: str
    namespace: str
    pod: str


def precheck(operation: str, obj: Any, namespace: str) -> Verdict | Hibernation:
    """Rows 1-3: a final verdict, or the object whose pod must be checked against the LIST.

    `namespace` is the review's; the object's own is the fallback for a review without one."""
    if operation != "CREATE":
        return allow()
    if obj is None:
        return deny(DECODE_PREFIX + OBJECT_MISSING, Decision.ERROR)
    if not isinstance(obj, dict):
        return deny(f"{DECODE_PREFIX}object: want object, got {json_type(obj)}", Decision.ERROR)
    try:
        decoded = _Object.model_validate(obj)
    except ValidationError as error:
        return deny(DECODE_PREFIX + decode_reason(error, root=""), Decision.ERROR)
    name, pod = decoded.metadata.name, decoded.spec.pod_ref.name
    if name != pod:
        return deny(
            f"cocoon-webhook: metadata.name {go_quote(name)} must equal spec.podRef.name "
            f"{go_quote(pod)} (one CocoonHibernation per pod, named after it)"
        )
    return Hibernation(name=name, namespace=namespace or decoded.metadata.namespace, pod=pod)


def namespace_problem(namespace: str) -> str | None:
    """Why `namespace` cannot be listed, or None. It goes into the LIST's path, and the admission
    endpoints do not authenticate their callers (SPEC 15): only a namespace name may go there."""
    if not namespace:
        return NO_NAMESPACE
    if rfc1123_label_errors(namespace):
        return f"namespace {go_quote(namespace)} is not a namespace name"
    return None


def list_failed(error: str) -> Verdict:
    """Row 4: fail closed. Admitting a possible duplicate risks the flip-flop this guard is for."""
    return deny(LIST_FAILED_PREFIX + error, Decision.ERROR)


def _at(item: Any, *path: str) -> Any:
    """The value at `path` in a listed object, None where it has no such field. Listed objects
    come from the API server; one we cannot read names no pod we could match."""
    for key in path:
        item = item.get(key) if isinstance(item, dict) else None
    return item


def _text_at(item: Any, *path: str) -> str | None:
    value = _at(item, *path)
    return value if isinstance(value, str) else None


def uniqueness_verdict(hibernation: Hibernation, existing: list[Any]) -> Verdict:
    """Rows 5-6: deny when another CocoonHibernation of the namespace targets the same pod."""
    pod = go_quote(hibernation.pod)
    for item in existing:
        if _text_at(item, "spec", "podRef", "name") != hibernation.pod:
            continue
        other = go_quote(_text_at(item, "metadata", "name") or "")
        if _at(item, "metadata", "deletionTimestamp"):
            return deny(
                f"cocoon-webhook: pod {pod}'s CocoonHibernation {other} is still terminating; "
                "retry after its cleanup finishes"
            )
        return deny(
            f"cocoon-webhook: pod {pod} already has a live CocoonHibernation {other}; "
            "flip its spec.desire instead of creating a second CR"
        )
    return allow()
