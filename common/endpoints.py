"""What each admission function decides: a pure decision wired, where needed, to I/O.

The table in `common.runtime` gives each its paths and readiness.

Blocking Kubernetes calls run in a worker thread (`asyncio.to_thread`) so the event loop keeps
serving other reviews; pure decisions run inline because they take microseconds.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial

from common import metrics
from common.admission import Decider
from common.affinity import AffinityStore
from common.cache import ClusterCaches
from common.config import Settings
from common.decisions import mutate as pods
from common.decisions import validate as workload
from common.decisions import validate_cocoonhibernation as hibernation
from common.decisions import validate_cocoonset as cocoonset
from common.kube import KubeApi, KubeError, NotFound
from common.logs import get_logger
from common.models import Review
from common.pod import decode_pod
from common.retry import DeadlineExceeded, Retrier, Tries
from common.verdict import AUDIT_REASON, Decision, Verdict, allow, deny, warning

PARENT_GET_TIMEOUT_S = 2.0
# The parent GET may take this long from receipt, its one retry of a transient failure
# included: inside the webhook's 5 s timeout, after which the API server fails the call anyway.
PARENT_GET_BUDGET_S = 4.0
PARENT_GET_RETRIES = 1
# One LIST attempt, all its pages together; with its one retry of a transient failure, as the
# parent GET, inside the webhook's 5 s.
HIBERNATION_LIST_TIMEOUT_S = 2.0
HIBERNATION_LIST_BUDGET_S = 4.0
HIBERNATION_LIST_RETRIES = 1
RESERVE_WORKERS = 64

_log = get_logger("endpoints")


def _fail_closed(exc: Exception) -> Verdict:
    # A bug in a validator denies, like a failing parent GET: its failurePolicy is Fail anyway.
    return deny(f"cocoon-webhook: internal error: {exc}", Decision.ERROR)


def validate_decider(kube: KubeApi) -> Decider:
    parent_reads = Retrier("validate", longest_attempt=PARENT_GET_TIMEOUT_S)

    async def decide(review: Review) -> Verdict:
        return (await judge(review)).with_denial_reason()

    async def judge(review: Review) -> Verdict:
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
        budget = Tries(review.received_at + PARENT_GET_BUDGET_S, PARENT_GET_RETRIES)
        read = partial(kube.get_workload, resource, namespace, name)
        try:
            parent = await asyncio.to_thread(parent_reads.call, budget, read)
        except NotFound:
            return allow()
        except KubeError as exc:
            return workload.parent_error_verdict(str(exc))
        except DeadlineExceeded:
            return workload.parent_error_verdict("no time left to read it")
        if not workload.parent_is_cocoon(parent):
            return allow()
        return workload.scale_down_verdict("Scale", namespace, name, old, new)

    return Decider(decide, lambda exc: _fail_closed(exc).with_denial_reason())


def cocoonset_decider() -> Decider:
    async def decide(review: Review) -> Verdict:
        req = review.request
        return cocoonset.decide(req.operation, req.object, req.old_object)

    return Decider(decide, _fail_closed)


def hibernation_decider(kube: KubeApi) -> Decider:
    """CocoonHibernation CREATE: one per pod, named after it. Fails closed: a duplicate let
    through makes the operator flip the VM between two desires."""
    lists = Retrier("validate_cocoonhibernation", longest_attempt=HIBERNATION_LIST_TIMEOUT_S)

    async def decide(review: Review) -> Verdict:
        req = review.request
        checked = hibernation.precheck(req.operation, req.object, req.namespace)
        if isinstance(checked, Verdict):
            return checked
        problem = hibernation.namespace_problem(checked.namespace)
        if problem is not None:
            return hibernation.list_failed(problem)
        budget = Tries(review.received_at + HIBERNATION_LIST_BUDGET_S, HIBERNATION_LIST_RETRIES)
        read = partial(kube.list_cocoonhibernations, checked.namespace)
        try:
            existing = await asyncio.to_thread(lists.call, budget, read)
        except KubeError as exc:
            return hibernation.list_failed(str(exc))
        except DeadlineExceeded:
            return hibernation.list_failed("no time left to list them")
        return hibernation.uniqueness_verdict(checked, existing)

    return Decider(decide, _fail_closed)


def mutate_decider(
    kube: KubeApi, settings: Settings, caches: ClusterCaches | None = None
) -> Decider:
    """Pod CREATE: stable VM name and sticky node. Fails open: a pod without sticky placement
    is better than a cluster where no cocoon pod can start while the API is degraded.

    With `caches`, reads come from them (the table's readiness waits for their first sync);
    they start on the first probe or admission, in the serving process."""
    store = AffinityStore(
        kube,
        timedelta(seconds=settings.inflight_window_s),
        clock=lambda: datetime.now(UTC),
        max_unconfirmed=settings.max_unconfirmed_per_namespace,
        caches=caches,
    )
    # Reservations block on the API and on their pool's batch; asyncio's default pool (a few
    # threads on a small node) would queue a burst before it could even join a batch.
    reservers = ThreadPoolExecutor(RESERVE_WORKERS, "reserve")

    async def decide(review: Review) -> Verdict:
        req = review.request
        intent = pods.plan(req.operation, req.kind.kind, req.namespace, req.name,
                           decode_pod(req.object))  # fmt: skip
        context = {"handler": "mutate", "uid": req.uid, "namespace": req.namespace}
        if isinstance(intent, pods.Skip):
            if intent.warning:
                _log.warning("VM name not reserved", extra={**context, "error": intent.reason})
            else:
                _log.debug("skipped", extra={**context, "error": intent.reason})
            return intent.verdict()
        context.update(pod=intent.pod_name, pool=intent.pool)
        deadline = review.received_at + settings.mutate_deadline_s
        try:
            # The thread may outlive the deadline; a late write leaves a claim that expires
            # after the in-flight window and is reaped after the grace (SPEC 5.10).
            reserving = asyncio.get_running_loop().run_in_executor(
                reservers, store.reserve, intent, deadline, req.dry_run
            )
            result = await asyncio.wait_for(
                reserving,
                timeout=max(deadline - time.monotonic(), 0),
            )
        except TimeoutError:
            result = pods.Failed(pods.REASON_DEADLINE)
        if isinstance(result, pods.Failed):
            if result.reason == pods.REASON_UNCONFIRMED:
                metrics.UNCONFIRMED_REFUSED_TOTAL.labels(pool=intent.pool).inc()
            _log.warning("VM name not reserved", extra={**context, "error": result.reason,
                                                        "decision": "affinity_failed"})  # fmt: skip
            return result.verdict(intent.pool)
        reservation = result.reservation
        _log.info(
            "reserved" if not req.dry_run else "planned (dry run)",
            extra={**context, "slot": reservation.slot, "vmName": reservation.vm_name,
                   "node": reservation.node, "decision": "allow"},
        )  # fmt: skip
        return pods.reserved_verdict(intent, result)

    def on_unexpected(exc: Exception) -> Verdict:
        text = warning(f"VM name not reserved (internal error); pod admitted without sticky "
                       f"placement: {exc}")  # fmt: skip
        return replace(
            allow(Decision.AFFINITY_FAILED, (text,)), audit=((AUDIT_REASON, "internal error"),)
        )

    return Decider(decide, on_unexpected)
