"""The emulator's webhook admission chain against a real local HTTPS webhook server.

The webhook server runs in a thread on 127.0.0.1 with a certificate from a throwaway CA; each
test scripts its answers per path and reads back the AdmissionReviews it received. The store
is a dict-backed fake with the two methods the chain uses.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.kube_emulator.admission import (
    AdmissionChain,
    AdmissionDenied,
    _Request,
    _rule_matches,
    _Selector,
)
from tests.pki import issue, make_ca

ADMREG = "admissionregistration.k8s.io"
SERVICE_DNS = "hooks.webhooks.svc"
OPT_OUT = {
    "matchExpressions": [
        {"key": "cocoonset.cocoonstack.io/managed", "operator": "NotIn", "values": ["false"]}
    ]
}
EXCLUDED = {
    "matchExpressions": [
        {
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": ["kube-system", "cocoon-system"],
        }
    ]
}


# --- certificates ------------------------------------------------------------------------------


def _pem_b64(pem: bytes) -> str:
    return base64.b64encode(pem).decode()


# --- the webhook server ------------------------------------------------------------------------

Behaviour = Callable[[dict[str, Any]], Any]


class WebhookServer:
    """HTTPS webhook endpoint; `answers[path]` decides each reply, `seen` records requests."""

    def __init__(self, certfile: str, keyfile: str) -> None:
        self.answers: dict[str, Behaviour] = {}
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                review = json.loads(body)
                path = self.path.partition("?")[0]
                owner.seen.append((self.path, review))
                behaviour: Behaviour = owner.answers.get(path, allow)
                result = behaviour(review)
                status, payload, ctype = 200, result, "application/json"
                if isinstance(result, tuple):
                    status, payload, ctype = result
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    def reviews(self, path: str) -> list[dict[str, Any]]:
        return [r for p, r in self.seen if p.partition("?")[0] == path]

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def respond(review: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], **fields},
    }


def allow(review: dict[str, Any]) -> dict[str, Any]:
    return respond(review, allowed=True)


def patching(ops: list[dict[str, Any]], warnings: list[str] | None = None) -> Behaviour:
    def answer(review: dict[str, Any]) -> dict[str, Any]:
        extra: dict[str, Any] = {"warnings": warnings} if warnings else {}
        return respond(
            review,
            allowed=True,
            patchType="JSONPatch",
            patch=base64.b64encode(json.dumps(ops).encode()).decode(),
            **extra,
        )

    return answer


def denying(status: dict[str, Any] | None) -> Behaviour:
    def answer(review: dict[str, Any]) -> dict[str, Any]:
        return respond(review, allowed=False, **({"status": status} if status is not None else {}))

    return answer


# --- fixtures ----------------------------------------------------------------------------------


class FakeStore:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}

    def put(self, group: str, resource: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[(group, resource, meta.get("namespace", ""), meta["name"])] = obj

    def get(self, group: str, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((group, resource, namespace, name))
        return json.loads(json.dumps(found)) if found is not None else None

    def list(self, group: str, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            json.loads(json.dumps(o))
            for (g, r, ns, _), o in self.objects.items()
            if g == group and r == resource and (namespace is None or ns == namespace)
        ]


@pytest.fixture(scope="module")
def pki() -> Iterator[dict[str, str]]:
    ca = make_ca("test-ca")
    leaf = issue(ca, "webhook", dns=("localhost", SERVICE_DNS))
    with tempfile.TemporaryDirectory() as tmp:
        certfile, keyfile = leaf.write(tmp)
        yield {
            "ca": _pem_b64(ca.cert_pem),
            "other_ca": _pem_b64(make_ca("other-ca").cert_pem),
            "cert": certfile,
            "key": keyfile,
        }


@pytest.fixture(scope="module")
def server(pki: dict[str, str]) -> Iterator[WebhookServer]:
    srv = WebhookServer(pki["cert"], pki["key"])
    yield srv
    srv.close()


@pytest.fixture
def webhook(server: WebhookServer) -> WebhookServer:
    server.answers.clear()
    server.seen.clear()
    return server


@pytest.fixture
def store() -> FakeStore:
    s = FakeStore()
    for name, labels in (
        ("default", {}),
        ("team-a", {"team": "a"}),
        ("cocoon-system", {}),
        ("kube-system", {}),
    ):
        s.put("", "namespaces", {"metadata": {"name": name, "labels": labels}})
    return s


@pytest.fixture
def chain(store: FakeStore, webhook: WebhookServer) -> AdmissionChain:
    return AdmissionChain(store, {"webhooks/hooks": f"127.0.0.1:{webhook.port}"})


# --- builders ----------------------------------------------------------------------------------

POD_RULE = {
    "apiGroups": [""],
    "apiVersions": ["v1"],
    "resources": ["pods"],
    "operations": ["CREATE"],
    "scope": "Namespaced",
}


def hook(
    name: str,
    client: dict[str, Any],
    *,
    rules: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "clientConfig": client,
        "rules": rules if rules is not None else [POD_RULE],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "matchPolicy": "Equivalent",
    }
    spec.update(fields)
    return spec


def register(store: FakeStore, kind: str, name: str, *hooks: dict[str, Any]) -> None:
    resource = {
        "mutating": "mutatingwebhookconfigurations",
        "validating": "validatingwebhookconfigurations",
    }[kind]
    store.put(ADMREG, resource, {"metadata": {"name": name}, "webhooks": list(hooks)})


def url_client(srv: WebhookServer, path: str, ca: str, host: str = "127.0.0.1") -> dict[str, Any]:
    return {"url": srv.url(path, host), "caBundle": ca}


def pod(name: str = "web", labels: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"namespace": "default", **meta}
    if name:
        metadata["name"] = name
    if labels:
        metadata["labels"] = labels
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


def admit_pod(
    chain: AdmissionChain,
    obj: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    namespace: str = "default",
    old: dict[str, Any] | None = None,
    dry_run: bool = False,
    subresource: str = "",
) -> dict[str, Any] | None:
    name = (obj or old or {}).get("metadata", {}).get("name", "")
    return chain.admit(
        operation=operation,
        group="",
        version="v1",
        kind="Pod",
        resource="pods",
        subresource=subresource,
        namespace=namespace,
        name=name,
        obj=obj,
        old=old,
        dry_run=dry_run,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- rule matching (pure) ----------------------------------------------------------------------


def _req(
    resource: str,
    *,
    operation: str = "UPDATE",
    group: str = "apps",
    subresource: str = "",
    namespace: str = "default",
) -> _Request:
    return _Request(operation, group, "v1", "X", resource, subresource, namespace, "n", None, False)


def _rule(resources: list[str], **over: Any) -> dict[str, Any]:
    rule = {
        "apiGroups": ["apps"],
        "apiVersions": ["v1"],
        "resources": resources,
        "operations": ["UPDATE"],
    }
    rule.update(over)
    return rule


@pytest.mark.parametrize(
    ("rule", "req", "expected"),
    [
        pytest.param(_rule(["deployments"]), _req("deployments"), True, id="exact"),
        pytest.param(
            _rule(["deployments"]), _req("deployments", subresource="scale"), False, id="no-sub"
        ),
        pytest.param(
            _rule(["deployments/scale"]),
            _req("deployments", subresource="scale"),
            True,
            id="sub-exact",
        ),
        pytest.param(_rule(["deployments/scale"]), _req("deployments"), False, id="sub-only"),
        pytest.param(
            _rule(["*/scale"]), _req("statefulsets", subresource="scale"), True, id="star-scale"
        ),
        pytest.param(
            _rule(["*/scale"]), _req("statefulsets", subresource="status"), False, id="star-other"
        ),
        pytest.param(_rule(["*"]), _req("anything"), True, id="star"),
        pytest.param(
            _rule(["*"]), _req("deployments", subresource="scale"), False, id="star-no-sub"
        ),
        pytest.param(_rule(["*/*"]), _req("pods", subresource="status"), True, id="star-star"),
        pytest.param(_rule(["deployments/*"]), _req("deployments"), True, id="res-star-main"),
        pytest.param(_rule(["deployments"]), _req("statefulsets"), False, id="other-resource"),
        pytest.param(_rule(["deployments"]), _req("deployments", group=""), False, id="group"),
        pytest.param(
            _rule(["deployments"], apiGroups=["*"]), _req("deployments", group="x"), True, id="g*"
        ),
        pytest.param(
            _rule(["deployments"], apiVersions=["v1beta1"]), _req("deployments"), False, id="ver"
        ),
        pytest.param(
            _rule(["deployments"]), _req("deployments", operation="CREATE"), False, id="op"
        ),
        pytest.param(
            _rule(["deployments"], operations=["*"]),
            _req("deployments", operation="DELETE"),
            True,
            id="op-star",
        ),
        pytest.param(_rule(["deployments"], operations=[]), _req("deployments"), False, id="op-0"),
        pytest.param(
            _rule(["deployments"], scope="Namespaced"), _req("deployments"), True, id="ns-scope"
        ),
        pytest.param(
            _rule(["deployments"], scope="Cluster"), _req("deployments"), False, id="cl-scope"
        ),
        pytest.param(
            _rule(["nodes"], apiGroups=[""], scope="Cluster"),
            _req("nodes", group="", namespace=""),
            True,
            id="cluster-object",
        ),
        pytest.param(
            _rule(["namespaces"], apiGroups=[""], scope="Namespaced"),
            _req("namespaces", group="", namespace="n"),
            False,
            id="namespace-is-cluster",
        ),
        pytest.param(
            _rule(["namespaces"], apiGroups=[""], scope="Cluster"),
            _req("namespaces", group="", namespace="n"),
            True,
            id="namespace-cluster",
        ),
    ],
)
def test_rule_matching(rule: dict[str, Any], req: _Request, expected: bool) -> None:
    assert _rule_matches(rule, req) is expected


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        pytest.param(None, {}, True, id="null"),
        pytest.param({}, {"a": "b"}, True, id="empty"),
        pytest.param({"matchLabels": {"a": "b"}}, {"a": "b", "c": "d"}, True, id="labels"),
        pytest.param({"matchLabels": {"a": "b"}}, {"a": "c"}, False, id="labels-differ"),
        pytest.param(OPT_OUT, {}, True, id="notin-absent"),
        pytest.param(OPT_OUT, {"cocoonset.cocoonstack.io/managed": "true"}, True, id="notin-ok"),
        pytest.param(OPT_OUT, {"cocoonset.cocoonstack.io/managed": "false"}, False, id="notin"),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["x", "y"]}]},
            {"a": "y"},
            True,
            id="in",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]},
            {},
            False,
            id="in-absent",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True, id="ex"
        ),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]},
            {"a": ""},
            False,
            id="dne",
        ),
    ],
)
def test_label_selectors(selector: Any, labels: dict[str, str], expected: bool) -> None:
    assert _Selector(selector).matches(labels) is expected


def test_malformed_selector_is_an_internal_error(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    bad = {"matchExpressions": [{"key": "a", "operator": "Near"}]}
    register(
        store,
        "validating",
        "v",
        hook("v.example.com", url_client(webhook, "/v", pki["ca"]), objectSelector=bad),
    )
    with pytest.raises(AdmissionDenied) as caught:
        admit_pod(chain, pod())
    assert (caught.value.code, caught.value.reason) == (500, "InternalError")
    assert caught.value.message == (
        'Internal error occurred: "Near" is not a valid label selector operator'
    )


# --- the review the webhook receives ---------------------------------------------------------


def test_create_sends_a_v1_review_with_the_api_servers_fields(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    register(
        store,
        "mutating",
        "m",
        hook("m.example.com", url_client(webhook, "/mutate", pki["ca"]), timeoutSeconds=5),
    )
    obj = pod()
    assert admit_pod(chain, obj) == obj
    [(path, review)] = webhook.seen
    # The API server tells the webhook its deadline.
    assert path == "/mutate?timeout=5s"
    assert review["apiVersion"] == "admission.k8s.io/v1"
    assert review["kind"] == "AdmissionReview"
    request = review["request"]
    uuid.UUID(request.pop("uid"))
    assert request == {
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "name": "web",
        "namespace": "default",
        "operation": "CREATE",
        "userInfo": {
            "username": "emulator-admin",
            "groups": ["system:masters", "system:authenticated"],
        },
        "object": obj,
        "oldObject": None,
        "dryRun": False,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
    }


def test_generate_name_create_reaches_mutation_without_a_name(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    register(store, "mutating", "m", hook("m.example.com", url_client(webhook, "/m", pki["ca"])))
    admit_pod(chain, pod(name="", generateName="job-x-"))
    [review] = webhook.reviews("/m")
    assert "name" not in review["request"]
    assert review["request"]["object"]["metadata"] == {
        "namespace": "default",
        "generateName": "job-x-",
    }


def test_delete_sends_the_old_object_only(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    rule = {**POD_RULE, "operations": ["DELETE"]}
    register(
        store,
        "validating",
        "v",
        hook("v.example.com", url_client(webhook, "/v", pki["ca"]), rules=[rule]),
    )
    old = pod()
    assert admit_pod(chain, None, operation="DELETE", old=old) is None
    [review] = webhook.reviews("/v")
    request = review["request"]
    assert request["object"] is None
    assert request["oldObject"] == old
    assert request["options"] == {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}


def test_scale_subresource_is_reviewed_as_an_autoscaling_scale(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    rules = [
        {
            "apiGroups": ["apps"],
            "apiVersions": ["v1"],
            "resources": ["deployments", "deployments/scale"],
            "operations": ["UPDATE"],
            "scope": "Namespaced",
        }
    ]
    register(
        store,
        "validating",
        "v",
        hook("v.example.com", url_client(webhook, "/validate", pki["ca"]), rules=rules),
    )
    scale = {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {"replicas": 1},
    }
    chain.admit(
        operation="UPDATE",
        group="apps",
        version="v1",
        kind="Scale",
        resource="deployments",
        subresource="scale",
        namespace="default",
        name="demo",
        obj=scale,
        old={**scale, "spec": {"replicas": 3}},
        dry_run=False,
    )
    [review] = webhook.reviews("/validate")
    request = review["request"]
    assert request["kind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert request["resource"] == {"group": "apps", "version": "v1", "resource": "deployments"}
    assert request["subResource"] == request["requestSubResource"] == "scale"
    assert request["options"] == {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}
    assert request["oldObject"]["spec"] == {"replicas": 3}


def test_rules_decide_which_writes_are_reviewed(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    register(store, "mutating", "m", hook("m.example.com", url_client(webhook, "/m", pki["ca"])))
    admit_pod(chain, pod(), operation="UPDATE", old=pod())
    admit_pod(chain, pod(), operation="UPDATE", old=pod(), subresource="status")
    chain.admit(
        operation="CREATE",
        group="",
        version="v1",
        kind="ConfigMap",
        resource="configmaps",
        subresource="",
        namespace="default",
        name="cm",
        obj={"metadata": {"name": "cm"}},
        old=None,
        dry_run=False,
    )
    assert webhook.seen == []
    admit_pod(chain, pod())
    assert len(webhook.seen) == 1


def test_webhook_configurations_are_never_reviewed(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    everything = {
        "apiGroups": ["*"],
        "apiVersions": ["*"],
        "resources": ["*"],
        "operations": ["*"],
    }
    register(
        store,
        "validating",
        "v",
        hook("v.example.com", url_client(webhook, "/v", pki["ca"]), rules=[everything]),
    )
    for resource in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        chain.admit(
            operation="DELETE",
            group=ADMREG,
            version="v1",
            kind="ValidatingWebhookConfiguration",
            resource=resource,
            subresource="",
            namespace="",
            name="v",
            obj=None,
            old={"metadata": {"name": "v"}},
            dry_run=False,
        )
    assert webhook.seen == []


# --- selectors -----------------------------------------------------------------------------------


def test_namespace_selector_excludes_by_metadata_name(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    register(
        store,
        "mutating",
        "m",
        hook("m.example.com", url_client(webhook, "/m", pki["ca"]), namespaceSelector=EXCLUDED),
    )
    # The stored namespaces carry no kubernetes.io/metadata.name label: the API server's
    # guarantee that it equals the name is what the exclusion relies on.
    admit_pod(chain, pod(), namespace="cocoon-system")
    admit_pod(chain, pod(), namespace="kube-system")
    assert webhook.seen == []
    admit_pod(chain, pod(), namespace="default")
    assert [r["request"]["namespace"] for r in webhook.reviews("/m")] == ["default"]


def test_namespace_selector_reads_namespace_labels(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    register(
        store,
        "validating",
        "v",
        hook(
            "v.example.com",
            url_client(webhook, "/v", pki["ca"]),
            namespaceSelector={"matchLabels": {"team": "a"}},
        ),
    )
    admit_pod(chain, pod(), namespace="default")
    assert webhook.seen == []
    admit_pod(chain, pod(), namespace="team-a")
    assert len(webhook.seen) == 1


def test_namespace_selector_on_a_missing_namespace_is_not_found(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    register(
        store,
        "mutating",
        "m",
        hook("m.example.com", url_client(webhook, "/m", pki["ca"]), namespaceSelector=EXCLUDED),
    )
    with pytest.raises(AdmissionDenied) as caught:
        admit_pod(chain, pod(), namespace="ghost")
    assert (caught.value.code, caught.value.reason) == (404, "NotFound")
    assert caught.value.message == 'namespaces "ghost" not found'


def test_namespace_selector_does_not_apply_to_cluster_scoped_objects(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    rule = {
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "resources": ["nodes"],
        "operations": ["CREATE"],
    }
    register(
        store,
        "validating",
        "v",
        hook(
            "v.example.com",
            url_client(webhook, "/v", pki["ca"]),
            rules=[rule],
            namespaceSelector={"matchLabels": {"team": "a"}},
        ),
    )
    chain.admit(
        operation="CREATE",
        group="",
        version="v1",
        kind="Node",
        resource="nodes",
        subresource="",
        namespace="",
        name="n1",
        obj={"metadata": {"name": "n1"}},
        old=None,
        dry_run=False,
    )
    [review] = webhook.reviews("/v")
    assert "namespace" not in review["request"]


def test_namespace_selector_on_a_namespace_uses_its_own_labels(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    rule = {
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "resources": ["namespaces"],
        "operations": ["CREATE"],
    }
    register(
        store,
        "validating",
        "v",
        hook(
            "v.example.com",
            url_client(webhook, "/v", pki["ca"]),
            rules=[rule],
            namespaceSelector={"matchLabels": {"team": "b"}},
        ),
    )
    for labels in ({}, {"team": "b"}):
        chain.admit(
            operation="CREATE",
            group="",
            version="v1",
            kind="Namespace",
            resource="namespaces",
            subresource="",
            namespace="",
            name="fresh",
            obj={"metadata": {"name": "fresh", "labels": labels}},
            old=None,
            dry_run=False,
        )
    [review] = webhook.reviews("/v")
    # A Namespace's admission attributes carry its own name as the namespace.
    assert review["request"]["namespace"] == "fresh"


def test_object_selector_matches_new_or_old_labels(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    rule = {**POD_RULE, "operations": ["CREATE", "UPDATE"]}
    register(
        store,
        "mutating",
        "m",
        hook(
            "m.example.com",
            url_client(webhook, "/m", pki["ca"]),
            rules=[rule],
            objectSelector=OPT_OUT,
        ),
    )
    opted_out = pod(labels={"cocoonset.cocoonstack.io/managed": "false"})
    admit_pod(chain, opted_out)
    assert webhook.seen == []
    admit_pod(chain, pod(labels={"cocoonset.cocoonstack.io/managed": "true"}))
    admit_pod(chain, pod())
    # An update is reviewed when either the old or the new object matches.
    admit_pod(chain, opted_out, operation="UPDATE", old=pod())
    assert len(webhook.reviews("/m")) == 3


# --- answers -----------------------------------------------------------------------------------


def test_match_conditions_decide_whether_the_webhook_is_called(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    named = {"name": "named-web", "expression": "object.metadata.name == 'web'"}
    create = {"name": "create", "expression": "request.operation == 'CREATE'"}
    register(store, "validating", "a", hook("a.example.com", url_client(webhook, "/v", pki["ca"]),
                                            matchConditions=[named, create]))  # fmt: skip
    webhook.answers["/v"] = denying({"message": "no"})
    with pytest.raises(AdmissionDenied):
        admit_pod(chain, pod("web"))
    assert len(webhook.reviews("/v")) == 1
    # One condition false: not called at all, whatever the failure policy.
    assert admit_pod(chain, pod("db")) == pod("db")
    assert len(webhook.reviews("/v")) == 1


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
def test_match_condition_errors_follow_the_failure_policy(
    chain: AdmissionChain,
    store: FakeStore,
    webhook: WebhookServer,
    pki: dict[str, str],
    policy: str,
) -> None:
    failing = {"name": "no-such-field", "expression": "object.spec.nodeName == 'x'"}
    register(store, "validating", "a", _failing_hook(policy, url_client(webhook, "/v", pki["ca"]),
                                                     matchConditions=[failing]))  # fmt: skip
    if policy == "Ignore":
        assert admit_pod(chain, pod()) == pod()
    else:
        with pytest.raises(AdmissionDenied) as caught:
            admit_pod(chain, pod())
        # Refused before any webhook is called, as ShouldCallHook refuses it.
        assert (caught.value.code, caught.value.reason) == (403, "Forbidden")
        assert caught.value.message.startswith(
            "pods \"web\" is forbidden: expression 'object.spec.nodeName == 'x'' resulted in "
            "error: "
        )
    assert webhook.reviews("/v") == []


def test_a_false_condition_wins_over_an_error(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    conditions = [
        {"name": "errs", "expression": "object.spec.nodeName == 'x'"},
        {"name": "false", "expression": "request.operation == 'DELETE'"},
    ]
    client = url_client(webhook, "/v", pki["ca"])
    register(store, "validating", "a",
             _failing_hook("Fail", client, matchConditions=conditions))  # fmt: skip
    assert admit_pod(chain, pod()) == pod()
    assert webhook.reviews("/v") == []


def test_patches_apply_in_configuration_order_and_validation_sees_the_result(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    ann = "/metadata/annotations"
    webhook.answers["/first"] = patching(
        [{"op": "add", "path": ann, "value": {"vm.cocoonstack.io/name": "vk-default-web-0"}}],
        warnings=["cocoon-webhook: first"],
    )
    webhook.answers["/second"] = patching(
        [{"op": "add", "path": "/spec/nodeName", "value": "cocoon-a"}],
        warnings=["cocoon-webhook: second", "cocoon-webhook: first"],
    )
    webhook.answers["/check"] = lambda r: respond(r, allowed=True, warnings=["checked"])
    # Registered out of order: the API server sorts configurations by name.
    register(
        store,
        "mutating",
        "b-second",
        hook("s.example.com", url_client(webhook, "/second", pki["ca"])),
    )
    register(
        store,
        "mutating",
        "a-first",
        hook("f.example.com", url_client(webhook, "/first", pki["ca"])),
    )
    register(
        store,
        "validating",
        "check",
        hook("c.example.com", url_client(webhook, "/check", pki["ca"])),
    )
    result = admit_pod(chain, pod())
    assert result is not None
    assert result["metadata"]["annotations"] == {"vm.cocoonstack.io/name": "vk-default-web-0"}
    assert result["spec"]["nodeName"] == "cocoon-a"
    assert [p.partition("?")[0] for p, _ in webhook.seen] == ["/first", "/second", "/check"]
    second = webhook.reviews("/second")[0]["request"]["object"]
    assert "annotations" in second["metadata"]
    assert webhook.reviews("/check")[0]["request"]["object"] == result
    assert chain.last_warnings == ["cocoon-webhook: first", "cocoon-webhook: second", "checked"]


def test_escaped_pointer_in_a_patch(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    webhook.answers["/m"] = patching(
        [{"op": "add", "path": "/metadata/annotations/vm.cocoonstack.io~1name", "value": "vk"}]
    )
    register(store, "mutating", "m", hook("m.example.com", url_client(webhook, "/m", pki["ca"])))
    result = admit_pod(chain, pod(annotations={"other": "x"}))
    assert result is not None
    assert result["metadata"]["annotations"] == {"other": "x", "vm.cocoonstack.io/name": "vk"}


@pytest.mark.parametrize(
    ("status", "code", "reason", "message"),
    [
        pytest.param(
            {"code": 403, "reason": "Forbidden", "message": "cocoon-webhook: no"},
            403,
            "Forbidden",
            'admission webhook "v.example.com" denied the request: cocoon-webhook: no',
            id="status",
        ),
        pytest.param(
            None,
            400,
            "",
            'admission webhook "v.example.com" denied the request without explanation',
            id="no-status",
        ),
        pytest.param(
            {"message": "nope"},
            400,
            "",
            'admission webhook "v.example.com" denied the request: nope',
            id="no-code",
        ),
        pytest.param(
            {"code": 200, "reason": "Because"},
            400,
            "Because",
            'admission webhook "v.example.com" denied the request: Because',
            id="reason-only",
        ),
        pytest.param(
            {"code": 422, "reason": "Invalid", "message": "bad"},
            422,
            "Invalid",
            'admission webhook "v.example.com" denied the request: bad',
            id="custom-code",
        ),
    ],
)
def test_denial_status_as_the_api_server_reports_it(
    chain: AdmissionChain,
    store: FakeStore,
    webhook: WebhookServer,
    pki: dict[str, str],
    status: dict[str, Any] | None,
    code: int,
    reason: str,
    message: str,
) -> None:
    webhook.answers["/v"] = denying(status)
    register(store, "validating", "v", hook("v.example.com", url_client(webhook, "/v", pki["ca"])))
    with pytest.raises(AdmissionDenied) as caught:
        admit_pod(chain, pod())
    assert (caught.value.code, caught.value.reason, caught.value.message) == (
        code,
        reason,
        message,
    )


def test_mutating_denial_stops_before_later_webhooks(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    webhook.answers["/no"] = denying({"code": 403, "reason": "Forbidden", "message": "no"})
    register(store, "mutating", "a", hook("no.example.com", url_client(webhook, "/no", pki["ca"])))
    register(store, "mutating", "b", hook("b.example.com", url_client(webhook, "/b", pki["ca"])))
    with pytest.raises(AdmissionDenied):
        admit_pod(chain, pod())
    assert webhook.reviews("/b") == []


def _failing_hook(policy: str, client: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return hook(f"{policy.lower()}.example.com", client, failurePolicy=policy, **fields)


def test_connection_refused_follows_the_failure_policy(
    chain: AdmissionChain, store: FakeStore, pki: dict[str, str]
) -> None:
    port = free_port()
    client = {"url": f"https://127.0.0.1:{port}/mutate", "caBundle": pki["ca"]}
    register(store, "mutating", "a", _failing_hook("Ignore", client))
    obj = pod()
    assert admit_pod(chain, obj) == obj
    register(store, "mutating", "b", _failing_hook("Fail", client))
    with pytest.raises(AdmissionDenied) as caught:
        admit_pod(chain, obj)
    assert (caught.value.code, caught.value.reason) == (500, "InternalError")
    assert caught.value.message == (
        'Internal error occurred: failed calling webhook "fail.example.com": failed to call '
        f'webhook: Post "https://127.0.0.1:{port}/mutate?timeout=10s": dial tcp '
        f"127.0.0.1:{port}: connect: connection refused"
    )


def test_timeout_follows_the_failure_policy(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    def slow(review: dict[str, Any]) -> dict[str, Any]:
        webhook.release.wait(3)
        return allow(review)

    webhook.answers["/slow"] = slow
    client = url_client(webhook, "/slow", pki["ca"])
    # Both validating webhooks run at once, so this takes one timeout, not two.
    register(store, "validating", "a", _failing_hook("Ignore", client, timeoutSeconds=1))
    register(store, "validating", "b", _failing_hook("Fail", client, timeoutSeconds=1))
    started = time.monotonic()
    with pytest.raises(AdmissionDenied) as caught:
        admit_pod(chain, pod())
    assert time.monotonic() - started < 2.5
    assert caught.value.code == 500
    assert caught.value.message == (
        'Internal error occurred: failed calling webhook "fail.example.com": failed to call '
        f'webhook: Post "{webhook.url("/slow")}?timeout=1s": context deadline exceeded'
    )


def test_certificate_must_chain_to_the_ca_bundle(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    client = url_client(webhook, "/m", pki["other_ca"])
    register(store, "mutating", "a", _failing_hook("Ignore", client))
    assert admit_pod(chain, pod()) is not None
    register(store, "mutating", "b", _failing_hook("Fail", client))
    with pytest.raises(AdmissionDenied) as caught:
        admit_pod(chain, pod())
    assert caught.value.code == 500
    assert caught.value.message.endswith(
        "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    )
    assert webhook.seen == []


def test_url_host_must_be_in_the_certificate(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    register(
        store,
        "mutating",
        "a",
        _failing_hook("Fail", url_client(webhook, "/m", pki["ca"], "localhost")),
    )
    assert admit_pod(chain, pod()) is not None
    [(path, _)] = webhook.seen
    assert path == "/m?timeout=10s"


def test_service_client_config_is_verified_for_the_service_name(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    service = {"namespace": "webhooks", "name": "hooks", "port": 443, "path": "/svc"}
    register(
        store,
        "mutating",
        "a",
        _failing_hook("Fail", {"service": service, "caBundle": pki["ca"]}),
    )
    assert admit_pod(chain, pod()) is not None
    assert len(webhook.reviews("/svc")) == 1

    # The same local address standing in for a Service whose name the certificate lacks.
    other = AdmissionChain(
        store,
        {
            "webhooks/hooks": f"127.0.0.1:{webhook.port}",
            "webhooks/impostor": f"127.0.0.1:{webhook.port}",
        },
    )
    register(
        store,
        "mutating",
        "a",
        _failing_hook("Fail", {"service": {**service, "name": "impostor"}, "caBundle": pki["ca"]}),
    )
    with pytest.raises(AdmissionDenied) as caught:
        admit_pod(other, pod())
    assert caught.value.message.endswith("certificate is not valid for impostor.webhooks.svc")


def test_unmapped_service_is_a_call_failure(
    chain: AdmissionChain, store: FakeStore, pki: dict[str, str]
) -> None:
    service = {"namespace": "nowhere", "name": "hooks", "path": "/m"}
    register(
        store, "mutating", "a", _failing_hook("Fail", {"service": service, "caBundle": pki["ca"]})
    )
    with pytest.raises(AdmissionDenied) as caught:
        admit_pod(chain, pod())
    assert caught.value.message.startswith(
        'Internal error occurred: failed calling webhook "fail.example.com": failed to call '
        'webhook: Post "https://hooks.nowhere.svc:443/m": dial tcp: lookup hooks.nowhere.svc'
    )


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        pytest.param(
            lambda r: {**respond(r, allowed=True), "response": {"uid": "x", "allowed": True}},
            "received invalid webhook response: expected response.uid=",
            id="uid",
        ),
        pytest.param(
            lambda r: {"response": {"uid": r["request"]["uid"], "allowed": True}},
            "received invalid webhook response: expected webhook response of "
            "admission.k8s.io/v1, Kind=AdmissionReview, got , Kind=",
            id="gvk",
        ),
        pytest.param(
            lambda r: {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
            "received invalid webhook response: webhook response was absent",
            id="absent",
        ),
        pytest.param(
            lambda r: (500, b"boom", "text/plain"),
            'failed to call webhook: an error on the server ("boom") has prevented the request '
            "from succeeding",
            id="http-500",
        ),
        pytest.param(
            lambda r: (200, b"not json", "application/json"),
            "failed to call webhook: couldn't get version/kind; json parse error",
            id="not-json",
        ),
        pytest.param(
            lambda r: respond(r, allowed=True, patch="W10="),
            "received invalid webhook response: webhook returned response.patch but not "
            "response.patchType",
            id="patch-without-type",
        ),
    ],
)
def test_malformed_answers_follow_the_failure_policy(
    chain: AdmissionChain,
    store: FakeStore,
    webhook: WebhookServer,
    pki: dict[str, str],
    answer: Behaviour,
    detail: str,
) -> None:
    webhook.answers["/bad"] = answer
    client = url_client(webhook, "/bad", pki["ca"])
    register(store, "mutating", "a", _failing_hook("Ignore", client))
    assert admit_pod(chain, pod()) is not None
    register(store, "mutating", "b", _failing_hook("Fail", client))
    with pytest.raises(AdmissionDenied) as caught:
        admit_pod(chain, pod())
    prefix = 'Internal error occurred: failed calling webhook "fail.example.com": '
    assert caught.value.message.startswith(prefix + detail)


def test_validating_webhook_may_not_patch(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    webhook.answers["/v"] = patching([{"op": "add", "path": "/x", "value": 1}])
    register(store, "validating", "v", _failing_hook("Fail", url_client(webhook, "/v", pki["ca"])))
    with pytest.raises(AdmissionDenied) as caught:
        admit_pod(chain, pod())
    assert caught.value.message.endswith(
        "received invalid webhook response: validating webhook may not return response.patch"
    )


def test_patch_that_does_not_apply_fails_even_under_ignore(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    # replace of a missing member would add it (evanphx v4); a missing element does not apply
    webhook.answers["/m"] = patching([{"op": "replace", "path": "/spec/containers/5", "value": 1}])
    register(store, "mutating", "a", _failing_hook("Ignore", url_client(webhook, "/m", pki["ca"])))
    with pytest.raises(AdmissionDenied) as caught:
        admit_pod(chain, pod())
    assert (caught.value.code, caught.value.reason) == (500, "InternalError")
    assert caught.value.message == (
        "Internal error occurred: replace operation does not apply: doc is missing key: "
        "/spec/containers/5: missing value"
    )


def test_defaulter_runs_after_each_patch(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    webhook.answers["/m"] = patching([{"op": "add", "path": "/spec/nodeName", "value": "a"}])
    register(store, "mutating", "a", hook("m.example.com", url_client(webhook, "/m", pki["ca"])))
    calls: list[tuple[str, str]] = []

    def defaulter(group: str, resource: str, obj: dict[str, Any]) -> None:
        calls.append((group, resource))
        obj["spec"].setdefault("restartPolicy", "Always")

    chain.defaulter = defaulter
    result = admit_pod(chain, pod())
    assert calls == [("", "pods")]
    assert result is not None and result["spec"]["restartPolicy"] == "Always"


# --- dry run -------------------------------------------------------------------------------------


@pytest.mark.parametrize("effects", ["Some", "Unknown"])
def test_dry_run_refused_by_webhooks_with_side_effects(
    chain: AdmissionChain,
    store: FakeStore,
    webhook: WebhookServer,
    pki: dict[str, str],
    effects: str,
) -> None:
    register(
        store,
        "mutating",
        "a",
        _failing_hook("Ignore", url_client(webhook, "/m", pki["ca"]), sideEffects=effects),
    )
    assert admit_pod(chain, pod()) is not None
    with pytest.raises(AdmissionDenied) as caught:
        admit_pod(chain, pod(), dry_run=True)
    assert (caught.value.code, caught.value.reason, caught.value.message) == (
        400,
        "BadRequest",
        'admission webhook "ignore.example.com" does not support dry run',
    )
    assert len(webhook.seen) == 1


@pytest.mark.parametrize("effects", ["None", "NoneOnDryRun"])
def test_dry_run_reaches_webhooks_without_side_effects(
    chain: AdmissionChain,
    store: FakeStore,
    webhook: WebhookServer,
    pki: dict[str, str],
    effects: str,
) -> None:
    register(
        store,
        "mutating",
        "a",
        hook("m.example.com", url_client(webhook, "/m", pki["ca"]), sideEffects=effects),
    )
    admit_pod(chain, pod(), dry_run=True)
    [review] = webhook.reviews("/m")
    assert review["request"]["dryRun"] is True
    assert review["request"]["options"]["dryRun"] == ["All"]


def test_warnings_are_per_thread(
    chain: AdmissionChain, store: FakeStore, webhook: WebhookServer, pki: dict[str, str]
) -> None:
    webhook.answers["/m"] = lambda r: respond(
        r, allowed=True, warnings=[r["request"]["object"]["metadata"]["name"]]
    )
    register(store, "mutating", "a", hook("m.example.com", url_client(webhook, "/m", pki["ca"])))
    seen: dict[str, list[str]] = {}

    def run(name: str) -> None:
        admit_pod(chain, pod(name=name))
        seen[name] = chain.last_warnings

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"a": ["a"], "b": ["b"], "c": ["c"]}
