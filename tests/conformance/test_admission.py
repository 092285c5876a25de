"""Webhook configurations as stored objects, and that writes go through the admission chain.

Upstream: pkg/apis/admissionregistration/v1/defaults.go and validation, and the webhook
admission plugin (k8s.io/apiserver/pkg/admission/plugin/webhook) being called on pod,
workload /scale and custom resource writes. The webhooks here point at a closed port, scoped
to the probe's namespace by namespaceSelector, so a real cluster is not disturbed.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.conformance.helpers import body_of, deployment, pod, raw, webhooks_settled

UNREACHABLE = "https://127.0.0.1:1/validate"


def webhook_config(name: str, ns: str, rules: list[dict[str, Any]], **hook: Any) -> dict[str, Any]:
    spec = {
        "name": "probe.conformance.example.com",
        "clientConfig": {"url": UNREACHABLE},
        "rules": rules,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        "timeoutSeconds": 2,
    }
    spec.update(hook)
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [spec],
    }


def rule(resources: list[str], group: str = "") -> dict[str, Any]:
    return {
        "apiGroups": [group],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": resources,
    }


@pytest.fixture
def vwc(admreg: client.AdmissionregistrationV1Api) -> Iterator[list[str]]:
    """Names of ValidatingWebhookConfigurations to delete after the probe."""
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(client.ApiException):
            admreg.delete_validating_webhook_configuration(name)


def _name() -> str:
    return f"conformance-{uuid.uuid4().hex[:8]}"


def test_webhook_configuration_defaults(
    admreg: client.AdmissionregistrationV1Api, ns: str, vwc: list[str]
) -> None:
    """SetDefaults_ValidatingWebhook: failurePolicy Fail, matchPolicy Equivalent, timeout 10,
    rule scope *, empty selectors, service port 443."""
    name = _name()
    body = webhook_config(name, ns, [rule(["nothings"], "conformance.example.com")])
    hook = body["webhooks"][0]
    del hook["timeoutSeconds"]
    del hook["namespaceSelector"]
    hook["clientConfig"] = {"service": {"namespace": ns, "name": "svc"}}
    vwc.append(name)
    out = admreg.create_validating_webhook_configuration(body).webhooks[0]
    assert out.failure_policy == "Fail"
    assert out.match_policy == "Equivalent"
    assert out.timeout_seconds == 10
    assert out.rules[0].scope == "*"
    assert out.client_config.service.port == 443
    assert out.namespace_selector == client.V1LabelSelector()
    assert out.object_selector == client.V1LabelSelector()


PATH = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


def test_webhook_configuration_requires_side_effects(api: client.ApiClient, ns: str) -> None:
    """admissionregistration/v1 requires sideEffects: 422 when missing."""
    body = webhook_config(_name(), ns, [rule(["nothings"], "conformance.example.com")])
    del body["webhooks"][0]["sideEffects"]
    resp = raw(api, "POST", PATH, body=body)  # the typed client refuses to send this
    assert resp.status == 422
    assert resp.json()["details"]["causes"][0]["field"] == "webhooks[0].sideEffects"


def test_webhook_url_must_be_https(api: client.ApiClient, ns: str) -> None:
    """clientConfig.url must use https."""
    body = webhook_config(_name(), ns, [rule(["nothings"], "conformance.example.com")])
    body["webhooks"][0]["clientConfig"] = {"url": "http://127.0.0.1:1/x"}
    resp = raw(api, "POST", PATH, body=body)
    assert resp.status == 422


def test_match_condition_must_compile(api: client.ApiClient, ns: str) -> None:
    """matchConditions are compiled when the configuration is written: 422 on a syntax error,
    and on an expression that is not boolean."""
    for expression in ("object.metadata.name ==", "'a' + 'b'"):
        body = webhook_config(_name(), ns, [rule(["nothings"], "conformance.example.com")])
        body["webhooks"][0]["matchConditions"] = [{"name": "bad", "expression": expression}]
        resp = raw(api, "POST", PATH, body=body)
        assert resp.status == 422, expression
        cause = resp.json()["details"]["causes"][0]
        assert cause["field"] == "webhooks[0].matchConditions[0].expression", expression


def test_match_conditions_skip_or_fail_the_webhook(
    admreg: client.AdmissionregistrationV1Api,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
    ns: str,
    vwc: list[str],
) -> None:
    """A false condition skips even an unreachable Fail webhook; an evaluation error (a field
    read without has()) refuses the write under failurePolicy Fail (403, ShouldCallHook)."""
    name = _name()
    vwc.append(name)
    only_blocked = {"name": "only-blocked", "expression": "object.metadata.name == 'blocked'"}
    admreg.create_validating_webhook_configuration(
        webhook_config(name, ns, [rule(["pods"])], failurePolicy="Fail",
                       matchConditions=[only_blocked])
    )  # fmt: skip
    webhooks_settled(admreg, apps, ns)
    assert core.create_namespaced_pod(ns, pod("skipped")).metadata.name == "skipped"
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_pod(ns, pod("blocked"))
    assert exc.value.status == 500
    errs = {"name": "errs", "expression": "object.spec.nodeName == 'x'"}
    admreg.patch_validating_webhook_configuration(
        name, [{"op": "replace", "path": "/webhooks/0/matchConditions", "value": [errs]}]
    )
    webhooks_settled(admreg, apps, ns)
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_pod(ns, pod("unscheduled"))
    assert exc.value.status == 403
    message = body_of(exc.value)["message"]
    assert message.startswith(
        "pods \"unscheduled\" is forbidden: expression 'object.spec.nodeName == 'x'' resulted in "
        "error: "
    ), message


def test_pod_create_goes_through_the_webhook(
    admreg: client.AdmissionregistrationV1Api,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
    ns: str,
    vwc: list[str],
) -> None:
    """A webhook that cannot be called fails the write under failurePolicy Fail (500), and is
    skipped under Ignore."""
    name = _name()
    vwc.append(name)
    admreg.create_validating_webhook_configuration(
        webhook_config(name, ns, [rule(["pods"])], failurePolicy="Fail")
    )
    webhooks_settled(admreg, apps, ns)
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_pod(ns, pod("blocked"))
    assert exc.value.status == 500
    assert 'failed calling webhook "probe.conformance.example.com"' in body_of(exc.value)["message"]
    admreg.patch_validating_webhook_configuration(
        name, [{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}]
    )
    webhooks_settled(admreg, apps, ns)
    assert core.create_namespaced_pod(ns, pod("allowed")).metadata.name == "allowed"


def test_scale_subresource_goes_through_the_webhook(
    admreg: client.AdmissionregistrationV1Api, apps: client.AppsV1Api, ns: str, vwc: list[str]
) -> None:
    """A rule on deployments/scale sees /scale writes, and only those."""
    apps.create_namespaced_deployment(ns, deployment("scaled"))
    name = _name()
    vwc.append(name)
    admreg.create_validating_webhook_configuration(
        webhook_config(name, ns, [rule(["deployments/scale"], "apps")])
    )
    webhooks_settled(admreg, apps, ns)
    apps.patch_namespaced_deployment("scaled", ns, {"metadata": {"labels": {"free": "yes"}}})
    with pytest.raises(client.ApiException) as exc:
        apps.patch_namespaced_deployment_scale("scaled", ns, {"spec": {"replicas": 3}})
    assert exc.value.status == 500
    assert apps.read_namespaced_deployment("scaled", ns).spec.replicas == 1


def test_dry_run_skips_side_effect_webhooks(
    admreg: client.AdmissionregistrationV1Api,
    core: client.CoreV1Api,
    ns: str,
    vwc: list[str],
    emulator_only: None,
) -> None:
    """A dry run reaching a webhook with sideEffects Unknown is 400 (the emulator stores
    Unknown on purpose, which v1 validation would refuse, to make this testable)."""
    name = _name()
    vwc.append(name)
    admreg.create_validating_webhook_configuration(
        webhook_config(name, ns, [rule(["pods"])], sideEffects="Unknown")
    )
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_pod(ns, pod("dry"), dry_run="All")
    assert exc.value.status == 400
    assert "does not support dry run" in body_of(exc.value)["message"]
