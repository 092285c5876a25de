"""Scale-down protection for cocoon workloads (SPEC section 6), as pure functions.

A cocoon workload's replicas are stateful agents; removing one deletes an agent, so the only
sanctioned way to shrink is hibernating individual agents. The I/O of the `/scale` path (one
GET of the parent) happens in the caller; everything here is data in, verdict out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.naming import TOLERATION_KEY
from common.verdict import Decision, Verdict, allow, deny

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet"})
SCALE_PARENTS = frozenset({"deployments", "statefulsets"})
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class WorkloadDecodeError(ValueError):
    """Not a workload the API server would store. It carries no message: every caller answers
    allow with decision "error" (fail open), and nothing would show one."""


@dataclass(frozen=True)
class WorkloadView:
    replicas: int | None
    cocoon: bool


def _replicas(spec: dict[str, Any]) -> int | None:
    value = spec.get("replicas")
    if value is None:
        return None
    # bool is an int in Python and 2.0 a float; Kubernetes accepts neither as an int32.
    if type(value) is not int or not INT32_MIN <= value <= INT32_MAX:
        raise WorkloadDecodeError
    return value


def _spec(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise WorkloadDecodeError
    spec = obj.get("spec")
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise WorkloadDecodeError
    return spec


def has_cocoon_toleration(tolerations: Any) -> bool:
    if tolerations is None:
        return False
    if not isinstance(tolerations, list):
        raise WorkloadDecodeError
    found = False
    for toleration in tolerations:
        if not isinstance(toleration, dict):
            raise WorkloadDecodeError
        for field in ("key", "operator", "value", "effect"):
            if toleration.get(field) is not None and not isinstance(toleration[field], str):
                raise WorkloadDecodeError
        found = found or toleration.get("key") == TOLERATION_KEY
    return found


def template_tolerations(spec: dict[str, Any]) -> Any:
    template = spec.get("template")
    if template is None:
        return None
    if not isinstance(template, dict):
        raise WorkloadDecodeError
    pod_spec = template.get("spec")
    if pod_spec is None:
        return None
    if not isinstance(pod_spec, dict):
        raise WorkloadDecodeError
    return pod_spec.get("tolerations")


def decode_workload(obj: Any) -> WorkloadView:
    spec = _spec(obj)
    return WorkloadView(
        replicas=_replicas(spec), cocoon=has_cocoon_toleration(template_tolerations(spec))
    )


def decode_scale_replicas(obj: Any) -> int:
    """autoscaling/v1 Scale; absent replicas count as 0, as the Go original."""
    replicas = _replicas(_spec(obj))
    return 0 if replicas is None else replicas


def parent_is_cocoon(parent: Any) -> bool:
    """The parent comes from the API server; if its template is odd, it is not ours to guard."""
    try:
        return decode_workload(parent).cocoon
    except WorkloadDecodeError:
        return False


def scale_down_verdict(kind: str, namespace: str, name: str, old: int, new: int) -> Verdict:
    if new >= old:
        return allow()
    return deny(
        f"cocoon-webhook: scale-down blocked for cocoon {kind} {namespace}/{name} "
        f"({old} -> {new}). Use a CocoonHibernation CR to suspend individual agents."
    )


def object_verdict(kind: str, namespace: str, name: str, old_obj: Any, new_obj: Any) -> Verdict:
    """Deployment/StatefulSet UPDATE. Absent replicas default to 1, as the API server does."""
    try:
        old, new = decode_workload(old_obj), decode_workload(new_obj)
    except WorkloadDecodeError:
        return allow(Decision.ERROR)
    # Old OR new: otherwise one update could drop the toleration and scale down at once.
    if not (old.cocoon or new.cocoon):
        return allow()
    old_replicas = 1 if old.replicas is None else old.replicas
    new_replicas = 1 if new.replicas is None else new.replicas
    return scale_down_verdict(kind, namespace, name, old_replicas, new_replicas)


def parent_error_verdict(error: str) -> Verdict:
    return deny(f"cocoon-webhook: cannot verify parent workload: {error}", Decision.ERROR)
