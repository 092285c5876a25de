"""The webhooks' matchConditions (knative/base/webhooks.yaml), evaluated with a real CEL runtime.

Each expression is taken from the built manifests and run by cel-expr-python (cel-cpp, see
tests/kube_emulator/cel.py for what of Kubernetes' CEL dialect it does not check) against a
table of requests. Beyond the table, the conditions must never keep a request from a webhook
that would have denied or patched it: hypothesis compares them with the webhooks' own decisions.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.decisions import mutate as pods
from common.decisions import validate as workloads
from common.decisions import validate_cocoonset as cocoonsets
from common.pod import decode_pod
from tests.helpers import COCOON_TOLERATION, scale, workload
from tests.kube_emulator import cel
from tests.test_manifests import KNATIVE, kustomize

PODS = "pods.mutate.cocoonstack.io"
WORKLOADS = "workloads.validate.cocoonstack.io"
COCOONSETS = "cocoonsets.validate.cocoonstack.io"
# Every CocoonHibernation CREATE needs its uniqueness LIST: nothing to spare the webhook.
HIBERNATIONS = "cocoonhibernations.validate.cocoonstack.io"
OTHER_TOLERATION = {"key": "node.kubernetes.io/not-ready", "operator": "Exists"}


def _conditions() -> dict[str, list[dict[str, str]]]:
    found = {}
    for obj in kustomize(KNATIVE / "base"):
        if obj["kind"] in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            for hook in obj["webhooks"]:
                found[hook["name"]] = hook.get("matchConditions", [])
    return found


CONDITIONS = _conditions()


def matches(hook: str, operation: str, obj: Any, old: Any, sub_resource: str = "") -> bool:
    """Whether the API server would call `hook`: every condition true (errors fail the test)."""
    # As kube-apiserver binds it: empty fields absent (no subResource on the object itself).
    request: dict[str, Any] = {"operation": operation, "object": obj, "oldObject": old}
    if sub_resource:
        request["subResource"] = sub_resource
    for condition in CONDITIONS[hook]:
        result = cel.evaluate(condition["expression"], obj, old, request)
        assert not isinstance(result, cel.CelEvalError), (condition["name"], result)
        if not result:
            return False
    return True


def test_every_webhook_has_conditions_that_compile() -> None:
    assert set(CONDITIONS) == {PODS, WORKLOADS, COCOONSETS, HIBERNATIONS}
    assert CONDITIONS[HIBERNATIONS] == []
    for hook, conditions in CONDITIONS.items():
        assert conditions or hook == HIBERNATIONS, hook
        for condition in conditions:
            cel.compile_condition(condition["expression"])


def test_the_runtime_rejects_what_the_api_server_rejects() -> None:
    with pytest.raises(cel.CelCompileError, match="Syntax error"):
        cel.compile_condition("object.spec.replicas <")
    with pytest.raises(cel.CelCompileError, match="must evaluate to bool"):
        cel.compile_condition("'a' + 'b'")
    # A field read without has() is an evaluation error, which the failurePolicy then judges;
    # kube-apiserver 1.37 refused a Deployment update so when `request.subResource` was read bare.
    missing = cel.evaluate("object.spec.replicas > 1", {"spec": {}}, None, {})
    assert isinstance(missing, cel.CelEvalError)
    bare = cel.evaluate("request.subResource == 'scale'", {}, {}, {"operation": "UPDATE"})
    assert isinstance(bare, cel.CelEvalError)


# --- pods ------------------------------------------------------------------------------------


def pod(tolerations: list[Any] | None = None, owners: list[str] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "demo-5d8c7b9f6-", "namespace": "team"},
        "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
    }
    if tolerations is not None:
        obj["spec"]["tolerations"] = tolerations
    if owners is not None:
        obj["metadata"]["ownerReferences"] = [
            {"apiVersion": "x/v1", "kind": kind, "name": "o", "uid": "u"} for kind in owners
        ]
    return obj


POD_CASES = [
    pytest.param(pod(), False, id="no-tolerations"),
    pytest.param(pod([OTHER_TOLERATION]), False, id="other-toleration"),
    pytest.param(pod([{"operator": "Exists"}]), False, id="tolerate-everything-keyless"),
    pytest.param(pod([COCOON_TOLERATION]), True, id="cocoon"),
    pytest.param(
        pod([OTHER_TOLERATION, {"key": "virtual-kubelet.io/provider", "value": "cocoon"}]),
        True,
        id="cocoon-second-equal",
    ),
    pytest.param(pod([COCOON_TOLERATION], ["ReplicaSet"]), True, id="cocoon-replicaset"),
    pytest.param(pod([COCOON_TOLERATION], ["CocoonSet"]), False, id="cocoon-of-cocoonset"),
    pytest.param(
        pod([COCOON_TOLERATION], ["ReplicaSet", "CocoonSet"]), False, id="cocoonset-second"
    ),
    pytest.param(pod([COCOON_TOLERATION], []), True, id="empty-owners"),
]


@pytest.mark.parametrize(("obj", "expected"), POD_CASES)
def test_pods(obj: dict[str, Any], expected: bool) -> None:
    assert matches(PODS, "CREATE", obj, None) is expected


# --- workloads and their /scale --------------------------------------------------------------


def template_tolerating(replicas: int | None, tolerations: list[Any] | None) -> dict[str, Any]:
    obj = workload(replicas, cocoon=False)
    if tolerations is None:
        del obj["spec"]["template"]["spec"]["tolerations"]
    else:
        obj["spec"]["template"]["spec"]["tolerations"] = tolerations
    return obj


WORKLOAD_CASES = [
    pytest.param(workload(1, cocoon=False), workload(3, cocoon=False), False, id="plain-down"),
    pytest.param(workload(5, cocoon=False), workload(3, cocoon=False), False, id="plain-up"),
    pytest.param(workload(3), workload(3), False, id="cocoon-rollout"),
    pytest.param(workload(5), workload(3), False, id="cocoon-up"),
    pytest.param(workload(2), workload(3), True, id="cocoon-down"),
    pytest.param(workload(0), workload(1), True, id="cocoon-to-zero"),
    pytest.param(workload(None), workload(3), True, id="cocoon-absent-is-one"),
    pytest.param(workload(0), workload(None), True, id="cocoon-from-absent-one"),
    pytest.param(workload(1), workload(None), False, id="cocoon-absent-equal"),
    pytest.param(workload(1, cocoon=False), workload(3), True, id="toleration-dropped"),
    pytest.param(workload(1), workload(3, cocoon=False), True, id="toleration-added"),
    pytest.param(
        template_tolerating(1, None), template_tolerating(3, None), False, id="no-tolerations"
    ),
    pytest.param(
        template_tolerating(1, [{"operator": "Exists"}]),
        template_tolerating(3, [OTHER_TOLERATION]),
        False,
        id="keyless-toleration",
    ),
    pytest.param(
        workload(1, kind="StatefulSet"), workload(2, kind="StatefulSet"), True, id="sts-down"
    ),
]


@pytest.mark.parametrize(("new", "old", "expected"), WORKLOAD_CASES)
def test_workloads(new: dict[str, Any], old: dict[str, Any], expected: bool) -> None:
    assert matches(WORKLOADS, "UPDATE", new, old) is expected


SCALE_CASES = [
    pytest.param(scale(1), scale(3), True, id="down"),
    pytest.param(scale(3), scale(3), False, id="same"),
    pytest.param(scale(5), scale(3), False, id="up"),
    pytest.param(scale(None), scale(2), True, id="to-zero-omitted"),
    pytest.param(scale(1), scale(None), False, id="from-zero-omitted"),
    pytest.param(scale(None), scale(None), False, id="zero-zero"),
]


@pytest.mark.parametrize(("new", "old", "expected"), SCALE_CASES)
def test_scale(new: dict[str, Any], old: dict[str, Any], expected: bool) -> None:
    """The Scale has no template: any shrink goes to validate, which reads the parent."""
    assert matches(WORKLOADS, "UPDATE", new, old, sub_resource="scale") is expected


# --- CocoonSets ------------------------------------------------------------------------------


def cocoonset(spec: Any = ..., **metadata: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "cocoonset.cocoonstack.io/v1",
        "kind": "CocoonSet",
        "metadata": {"name": "agents", "namespace": "team", **metadata},
    }
    if spec is not ...:
        obj["spec"] = spec
    return obj


SPEC = {"agent": {"image": "agent:1", "replicas": 2}}


COCOONSET_CASES = [
    pytest.param("CREATE", cocoonset(SPEC), None, True, id="create"),
    pytest.param("CREATE", cocoonset(), None, True, id="create-without-spec"),
    pytest.param("UPDATE", cocoonset(SPEC), cocoonset(SPEC), False, id="same-spec"),
    pytest.param(
        "UPDATE",
        cocoonset(SPEC, finalizers=[]),
        cocoonset(SPEC, finalizers=["cocoonstack.io/vm"]),
        False,
        id="finalizer-removed",
    ),
    pytest.param(
        "UPDATE",
        cocoonset({"agent": {"image": "agent:2", "replicas": 2}}),
        cocoonset(SPEC),
        True,
        id="image-changed",
    ),
    pytest.param(
        "UPDATE",
        cocoonset({"agent": {"image": "agent:1", "replicas": 2, "extra": True}}),
        cocoonset(SPEC),
        True,
        id="field-added",
    ),
    pytest.param("UPDATE", cocoonset(SPEC), cocoonset(), True, id="spec-added"),
    pytest.param("UPDATE", cocoonset(), cocoonset(SPEC), True, id="spec-removed"),
    pytest.param("UPDATE", cocoonset(None), cocoonset(), False, id="null-is-absent"),
    pytest.param("UPDATE", cocoonset(), cocoonset(), False, id="both-absent"),
]


@pytest.mark.parametrize(("operation", "new", "old", "expected"), COCOONSET_CASES)
def test_cocoonsets(operation: str, new: Any, old: Any, expected: bool) -> None:
    assert matches(COCOONSETS, operation, new, old) is expected


# --- the conditions never hide a request a webhook would act on ------------------------------

tolerations = st.lists(
    st.sampled_from([COCOON_TOLERATION, OTHER_TOLERATION, {"operator": "Exists"}]), max_size=3
)
replica_counts = st.none() | st.integers(min_value=0, max_value=5)


def with_tolerations(replicas: int | None, chosen: list[Any] | None) -> dict[str, Any]:
    return template_tolerating(replicas, None if chosen is None else copy.deepcopy(chosen))


@settings(max_examples=300, deadline=None)
@given(
    new_replicas=replica_counts,
    old_replicas=replica_counts,
    new_tolerations=st.none() | tolerations,
    old_tolerations=st.none() | tolerations,
)
def test_workload_condition_is_exactly_validates_denial(
    new_replicas: int | None,
    old_replicas: int | None,
    new_tolerations: list[Any] | None,
    old_tolerations: list[Any] | None,
) -> None:
    new = with_tolerations(new_replicas, new_tolerations)
    old = with_tolerations(old_replicas, old_tolerations)
    verdict = workloads.object_verdict("Deployment", "team", "demo", old, new)
    assert matches(WORKLOADS, "UPDATE", new, old) is (not verdict.allowed)


@settings(max_examples=100, deadline=None)
@given(new_replicas=replica_counts, old_replicas=replica_counts)
def test_scale_condition_is_exactly_when_validate_reads_the_parent(
    new_replicas: int | None, old_replicas: int | None
) -> None:
    new, old = scale(new_replicas), scale(old_replicas)
    shrinks = workloads.decode_scale_replicas(new) < workloads.decode_scale_replicas(old)
    assert matches(WORKLOADS, "UPDATE", new, old, sub_resource="scale") is shrinks


@settings(max_examples=200, deadline=None)
@given(
    chosen=st.none() | tolerations,
    owners=st.none() | st.lists(st.sampled_from(["ReplicaSet", "CocoonSet", "Job"]), max_size=2),
)
def test_pods_skipped_are_pods_mutate_leaves_alone(
    chosen: list[Any] | None, owners: list[str] | None
) -> None:
    obj = pod(chosen, owners)
    plan = pods.plan("CREATE", "Pod", "team", "", decode_pod(obj))
    if not matches(PODS, "CREATE", obj, None):
        assert isinstance(plan, pods.Skip), plan
        assert plan.verdict().patch == ()
        assert not plan.warning
    else:
        assert isinstance(plan, pods.Intent), plan


@settings(max_examples=200, deadline=None)
@given(
    new_image=st.sampled_from(["agent:1", "agent:2", ""]),
    old_image=st.sampled_from(["agent:1", "agent:2", ""]),
    new_replicas=st.integers(min_value=-1, max_value=2),
    old_replicas=st.integers(min_value=-1, max_value=2),
)
def test_cocoonset_updates_skipped_are_updates_it_allows(
    new_image: str, old_image: str, new_replicas: int, old_replicas: int
) -> None:
    new = cocoonset({"agent": {"image": new_image, "replicas": new_replicas}})
    old = cocoonset({"agent": {"image": old_image, "replicas": old_replicas}})
    if not matches(COCOONSETS, "UPDATE", new, old):
        assert cocoonsets.decide("UPDATE", new, old).allowed
