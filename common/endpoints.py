"""The admission endpoints: each wires a pure decision to the shell and, where needed, to I/O.

Blocking Kubernetes calls run in a worker thread (`asyncio.to_thread`) so the event loop keeps
serving other reviews; pure decisions run inline because they take microseconds.
"""

from __future__ import annotations

import asyncio

from common.admission import Endpoint
from common.decisions import validate as workload
from common.decisions import validate_cocoonset as cocoonset
from common.health import always_ready, api_readiness
from common.kube import KubeApi, KubeError, NotFound
from common.logs import get_logger
from common.models import Review
from common.verdict import Decision, Verdict, allow, deny

PARENT_GET_TIMEOUT_S = 2.0

_log = get_logger("endpoints")


def validate_endpoint(kube: KubeApi) -> Endpoint:
    async def decide(review: Review) -> Verdict:
        req = review.request
        if req.operation != "UPDATE":
            return allow()
        if req.sub_resource == "scale":
            return await _scale(req.resource.resource, req.namespace, req.name, review)
        if req.kind.kind in workload.WORKLOAD_KINDS:
            return workload.object_verdict(
                req.kind.kind, req.namespace, req.name, req.old_object, req.object
            )
        return allow()

    async def _scale(resource: str, namespace: str, name: str, review: Review) -> Verdict:
        try:
            old = workload.decode_scale_replicas(review.request.old_object)
            new = workload.decode_scale_replicas(review.request.object)
        except workload.WorkloadDecodeError:
            return allow(Decision.ERROR)
        if resource not in workload.SCALE_PARENTS:
            return allow()
        if new >= old:
            # Growing or equal is allowed whatever the parent is: skipping the GET keeps an
            # API outage from blocking scale-ups (the parent only matters for a scale-down).
            return allow()
        try:
            parent = await asyncio.to_thread(
                kube.get_workload, resource, namespace, name, PARENT_GET_TIMEOUT_S
            )
        except NotFound:
            return allow()
        except KubeError as exc:
            return workload.parent_error_verdict(str(exc))
        if not workload.parent_is_cocoon(parent):
            return allow()
        return workload.scale_down_verdict("Scale", namespace, name, old, new)

    async def readiness() -> tuple[bool, str]:
        return await api_readiness(kube)

    return Endpoint(
        handler="validate",
        paths=frozenset({"/", "/validate"}),
        decide=decide,
        readiness=readiness,
        # Fail closed, like a failing parent GET: the webhook's failurePolicy is Fail anyway.
        on_unexpected=lambda exc: deny(f"cocoon-webhook: internal error: {exc}", Decision.ERROR),
    )


def cocoonset_endpoint() -> Endpoint:
    async def decide(review: Review) -> Verdict:
        req = review.request
        return cocoonset.decide(req.operation, req.object, req.old_object)

    return Endpoint(
        handler="validate_cocoonset",
        paths=frozenset({"/", "/validate-cocoonset"}),
        decide=decide,
        readiness=always_ready,
        on_unexpected=lambda exc: deny(f"cocoon-webhook: internal error: {exc}", Decision.ERROR),
    )
