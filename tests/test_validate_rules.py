"""Scale-down rules (SPEC section 6) as tables over the pure decision functions."""

from __future__ import annotations

from typing import Any

import pytest

from common.decisions.validate import (
    WorkloadDecodeError,
    decode_scale_replicas,
    object_verdict,
    parent_error_verdict,
    parent_is_cocoon,
    scale_down_verdict,
)
from common.verdict import Decision
from tests.helpers import COCOON_TOLERATION, scale, workload

BLOCKED = (
    "cocoon-webhook: scale-down blocked for cocoon {kind} ns/demo ({old} -> {new}). "
    "Use a CocoonHibernation CR to suspend individual agents."
)


def with_spec(**spec: Any) -> dict[str, Any]:
    return {"spec": spec}


@pytest.mark.parametrize(
    ("kind", "old", "new", "allowed", "decision", "message"),
    [
        pytest.param("Deployment", workload(3), workload(2), False, Decision.DENY,
                     BLOCKED.format(kind="Deployment", old=3, new=2), id="deployment-down"),
        pytest.param("StatefulSet", workload(5, kind="StatefulSet"),
                     workload(0, kind="StatefulSet"), False, Decision.DENY,
                     BLOCKED.format(kind="StatefulSet", old=5, new=0), id="statefulset-to-zero"),
        pytest.param("Deployment", workload(3), workload(3), True, Decision.ALLOW, "",
                     id="equal"),
        pytest.param("Deployment", workload(3), workload(4), True, Decision.ALLOW, "",
                     id="growing"),
        pytest.param("Deployment", workload(3, cocoon=False), workload(1, cocoon=False), True,
                     Decision.ALLOW, "", id="not-cocoon"),
        pytest.param("Deployment", workload(3), workload(1, cocoon=False), False, Decision.DENY,
                     BLOCKED.format(kind="Deployment", old=3, new=1),
                     id="old-only-toleration"),
        pytest.param("Deployment", workload(3, cocoon=False), workload(1), False, Decision.DENY,
                     BLOCKED.format(kind="Deployment", old=3, new=1),
                     id="new-only-toleration"),
        pytest.param("Deployment", workload(None), workload(0), False, Decision.DENY,
                     BLOCKED.format(kind="Deployment", old=1, new=0),
                     id="absent-replicas-count-as-one"),
        pytest.param("Deployment", workload(2), workload(None), False, Decision.DENY,
                     BLOCKED.format(kind="Deployment", old=2, new=1), id="replicas-removed"),
        pytest.param("Deployment", with_spec(replicas=None, template={"spec": {
                         "tolerations": [COCOON_TOLERATION]}}), workload(1), True,
                     Decision.ALLOW, "", id="null-replicas-is-one"),
        pytest.param("Deployment", workload(3), with_spec(replicas="2"), True, Decision.ERROR, "",
                     id="replicas-string"),
        pytest.param("Deployment", workload(3), with_spec(replicas=1.5), True, Decision.ERROR,
                     "", id="replicas-fraction"),
        pytest.param("Deployment", workload(3), with_spec(replicas=2.0), True, Decision.ERROR,
                     "", id="replicas-float"),
        pytest.param("Deployment", workload(3), with_spec(replicas=True), True, Decision.ERROR,
                     "", id="replicas-bool"),
        pytest.param("Deployment", workload(3), with_spec(replicas=2**31), True, Decision.ERROR,
                     "", id="replicas-over-int32"),
        pytest.param("Deployment", workload(3), with_spec(template={"spec": {"tolerations": "x"}}),
                     True, Decision.ERROR, "", id="tolerations-not-list"),
        pytest.param("Deployment", workload(3), with_spec(template={"spec": {"tolerations": [
                         {"key": 1}]}}), True, Decision.ERROR, "", id="toleration-key-number"),
        pytest.param("Deployment", workload(3), with_spec(template={"spec": {"tolerations": [1]}}),
                     True, Decision.ERROR, "", id="toleration-not-object"),
        pytest.param("Deployment", None, workload(1), True, Decision.ERROR, "",
                     id="old-missing"),
        pytest.param("Deployment", workload(3), "x", True, Decision.ERROR, "", id="new-string"),
        pytest.param("Deployment", workload(3), {"spec": []}, True, Decision.ERROR, "",
                     id="spec-list"),
        pytest.param("Deployment", workload(3), with_spec(replicas=1, template={"spec": {
                         "tolerations": [{"key": "other"}]}}), False, Decision.DENY,
                     BLOCKED.format(kind="Deployment", old=3, new=1),
                     id="old-cocoon-new-other-toleration"),
    ],
)  # fmt: skip
def test_object_path(
    kind: str, old: Any, new: Any, allowed: bool, decision: Decision, message: str
) -> None:
    verdict = object_verdict(kind, "ns", "demo", old, new)
    assert (verdict.allowed, verdict.decision, verdict.message) == (allowed, decision, message)


@pytest.mark.parametrize(
    ("toleration", "cocoon"),
    [
        pytest.param({"key": "virtual-kubelet.io/provider"}, True, id="key-only"),
        pytest.param({"key": "virtual-kubelet.io/provider", "operator": "Equal", "value": "x",
                      "effect": "NoExecute"}, True, id="operator-value-effect-ignored"),
        pytest.param({"key": "virtual-kubelet.io/Provider"}, False, id="case-sensitive"),
        pytest.param({"operator": "Exists"}, False, id="wildcard-is-not-cocoon"),
    ],
)  # fmt: skip
def test_cocoon_toleration_is_matched_by_key_only(toleration: dict[str, str], cocoon: bool) -> None:
    obj = {"spec": {"template": {"spec": {"tolerations": [toleration]}}}}
    assert parent_is_cocoon(obj) is cocoon


@pytest.mark.parametrize(
    ("obj", "replicas"),
    [
        pytest.param(scale(4), 4, id="set"),
        pytest.param(scale(None), 0, id="absent-is-zero"),
        pytest.param({"spec": {"replicas": None}}, 0, id="null-is-zero"),
        pytest.param({}, 0, id="no-spec"),
    ],
)
def test_scale_replicas(obj: Any, replicas: int) -> None:
    assert decode_scale_replicas(obj) == replicas


@pytest.mark.parametrize(
    "obj", [None, [], {"spec": {"replicas": "1"}}, {"spec": {"replicas": 1.0}}, {"spec": 3}]
)
def test_scale_undecodable(obj: Any) -> None:
    with pytest.raises(WorkloadDecodeError):
        decode_scale_replicas(obj)


def test_scale_message_names_scale_kind() -> None:
    verdict = scale_down_verdict("Scale", "ns", "demo", 3, 1)
    assert verdict.message == BLOCKED.format(kind="Scale", old=3, new=1)


def test_parent_error_denies_with_reason() -> None:
    verdict = parent_error_verdict("get deployments ns/demo: timeout after 2s")
    assert not verdict.allowed
    assert verdict.decision is Decision.ERROR
    assert verdict.message == (
        "cocoon-webhook: cannot verify parent workload: get deployments ns/demo: timeout after 2s"
    )


def test_odd_parent_template_is_not_guarded() -> None:
    assert parent_is_cocoon({"spec": {"template": "x"}}) is False
    assert parent_is_cocoon(workload(1)) is True
