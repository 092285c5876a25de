"""The shared HTTP shell: routing, envelope errors, the one metric sample, reply encoding."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from common.admission import Endpoint, serve
from common.edge import MAX_BODY_BYTES
from common.models import Review
from common.verdict import Decision, PatchOp, Verdict, allow, deny, patched
from tests.helpers import admission_count, response_of, review, total_admissions

HANDLER = "validate_cocoonset"  # a real label value; the metric only allows the three handlers


class Scripted:
    """An endpoint whose verdict, readiness and failures each test sets."""

    def __init__(self) -> None:
        self.verdict: Verdict = allow()
        self.raise_exc: Exception | None = None
        self.ready: tuple[bool, str] = (True, "ready")
        self.seen: list[Review] = []

    async def decide(self, review: Review) -> Verdict:
        self.seen.append(review)
        if self.raise_exc:
            raise self.raise_exc
        return self.verdict

    async def readiness(self) -> tuple[bool, str]:
        return self.ready

    def endpoint(self) -> Endpoint:
        return Endpoint(
            handler=HANDLER,
            paths=frozenset({"/", "/validate-cocoonset"}),
            decide=self.decide,
            readiness=self.readiness,
            on_unexpected=lambda exc: deny(f"internal: {exc}", Decision.ERROR),
        )


@pytest.fixture
def scripted() -> Scripted:
    return Scripted()


@pytest.fixture
def client(scripted: Scripted) -> Iterator[TestClient]:
    endpoint = scripted.endpoint()

    async def handle(request: Request) -> Response:
        return await serve(request, endpoint)

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    app = Starlette(routes=[Route("/{path:path}", handle, methods=methods)])
    with TestClient(app) as test_client:
        yield test_client


V1 = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}


@pytest.mark.parametrize(
    ("body", "status", "reply"),
    [
        pytest.param(b"", 400, "decode admission review: Expecting value: line 1 column 1 (char 0)",
                     id="empty"),
        pytest.param(b'{"apiVersion": "admission', 400,
                     "decode admission review: Unterminated string starting at: line 1 column 16 "
                     "(char 15)", id="truncated"),
        pytest.param(b"{} {}", 400, "decode admission review: Extra data: line 1 column 4 (char 3)",
                     id="trailing-data"),
        pytest.param(b"[1]", 400, "decode admission review: body is not a JSON object",
                     id="array"),
        pytest.param(b'"x"', 400, "decode admission review: body is not a JSON object",
                     id="string"),
        pytest.param(b'{"a": NaN}', 400, "decode admission review: invalid JSON constant NaN",
                     id="nan"),
        pytest.param(b"\xff\xfe", 400,
                     "decode admission review: invalid UTF-8: invalid start byte", id="not-utf8"),
        pytest.param(json.dumps({**V1, "apiVersion": "admission.k8s.io/v1beta1"}).encode(), 400,
                     'unsupported admission review "admission.k8s.io/v1beta1" "AdmissionReview": '
                     "want admission.k8s.io/v1 AdmissionReview", id="v1beta1"),
        pytest.param(json.dumps({"request": {"uid": "u"}}).encode(), 400,
                     'unsupported admission review "" "": want admission.k8s.io/v1 '
                     "AdmissionReview", id="no-apiversion"),
        # Go's %q, and a lone surrogate escape read as Go's encoding/json reads it (U+FFFD).
        pytest.param(b'{"apiVersion": "v\\ud800\\u0001\\n", "kind": "AdmissionReview"}', 400,
                     'unsupported admission review "v\ufffd\\x01\\n" "AdmissionReview": '
                     "want admission.k8s.io/v1 AdmissionReview", id="go-quoted-apiversion"),
        pytest.param(json.dumps({**V1, "kind": "Pod"}).encode(), 400,
                     'unsupported admission review "admission.k8s.io/v1" "Pod": '
                     "want admission.k8s.io/v1 AdmissionReview", id="wrong-kind"),
        pytest.param(json.dumps(V1).encode(), 400, "admission review missing request",
                     id="no-request"),
        pytest.param(json.dumps({**V1, "request": None}).encode(), 400,
                     "admission review missing request", id="null-request"),
        pytest.param(json.dumps({**V1, "request": [1]}).encode(), 400,
                     "admission review missing request", id="request-list"),
        pytest.param(json.dumps({**V1, "request": {}}).encode(), 400,
                     "decode admission review: request.uid: required", id="no-uid"),
        pytest.param(json.dumps({**V1, "request": {"uid": ""}}).encode(), 400,
                     'decode admission review: request.uid: want non-empty string, got ""',
                     id="empty-uid"),
        pytest.param(json.dumps({**V1, "request": {"uid": 7}}).encode(), 400,
                     "decode admission review: request.uid: want string, got number 7",
                     id="uid-number"),
        pytest.param(json.dumps({**V1, "request": {"uid": "u", "operation": 1}}).encode(), 400,
                     "decode admission review: request.operation: want string, got number 1",
                     id="operation-number"),
        pytest.param(json.dumps({**V1, "request": {"uid": "u", "kind": "Pod"}}).encode(), 400,
                     "decode admission review: request.kind: want object, got string",
                     id="kind-string"),
        pytest.param(json.dumps({**V1, "request": {"uid": "u", "resource": []}}).encode(), 400,
                     "decode admission review: request.resource: want object, got array",
                     id="resource-list"),
        pytest.param(json.dumps({**V1, "request": {"uid": "u", "dryRun": "true"}}).encode(), 400,
                     "decode admission review: request.dryRun: want bool, got string",
                     id="dryrun-string"),
        pytest.param(json.dumps({**V1, "request": {"uid": "u", "subResource": 1}}).encode(), 400,
                     "decode admission review: request.subResource: want string, got number 1",
                     id="subresource-number"),
        pytest.param(json.dumps({**V1, "request": {"uid": "u", "namespace": None}}).encode(), 400,
                     "decode admission review: request.namespace: want string, got null",
                     id="namespace-null"),
    ],
)  # fmt: skip
def test_envelope_errors_get_one_line_400(
    client: TestClient, scripted: Scripted, body: bytes, status: int, reply: str
) -> None:
    before = admission_count(HANDLER, "error")
    response = client.post("/validate-cocoonset", content=body)
    assert response.status_code == status
    assert response.text == reply
    assert "\n" not in response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert admission_count(HANDLER, "error") == before + 1
    assert scripted.seen == []


def test_body_over_limit_by_content_length_is_413(client: TestClient) -> None:
    before = admission_count(HANDLER, "error")
    response = client.post("/", content=b" " * (MAX_BODY_BYTES + 1))
    assert (response.status_code, response.text) == (413, "admission review larger than 10 MiB")
    assert admission_count(HANDLER, "error") == before + 1


def test_body_over_limit_while_streaming_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(11):
            yield b" " * (1024 * 1024)

    response = client.post("/", content=chunks())  # chunked: no Content-Length to trust
    assert (response.status_code, response.text) == (413, "admission review larger than 10 MiB")


def test_body_at_limit_is_read(client: TestClient, scripted: Scripted) -> None:
    body = json.dumps(review({"pad": ""}, uid="big")).encode()
    body = body[:-1] + b" " * (MAX_BODY_BYTES - len(body)) + b"}"
    assert len(body) == MAX_BODY_BYTES
    assert response_of(client.post("/", content=body))["uid"] == "big"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/", "/validate-cocoonset"])
def test_admission_paths_take_only_post(client: TestClient, method: str, path: str) -> None:
    before = total_admissions(HANDLER)
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert total_admissions(HANDLER) == before


@pytest.mark.parametrize("path", ["/validate-cocoonset/", "/mutate", "/validate", "/x/y"])
def test_unknown_paths_are_404_like_go(client: TestClient, path: str) -> None:
    response = client.post(path, json=review())
    assert (response.status_code, response.text) == (404, "404 page not found")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_query_string_is_ignored_for_routing(client: TestClient) -> None:
    assert response_of(client.post("/validate-cocoonset?timeout=5s", json=review()))["allowed"]


@pytest.mark.parametrize("method", ["GET", "POST", "HEAD"])
def test_healthz_answers_any_method(client: TestClient, method: str) -> None:
    response = client.request(method, "/healthz")
    assert response.status_code == 200
    if method != "HEAD":
        assert response.text == "ok"


def test_readyz_reflects_the_endpoint_readiness(client: TestClient, scripted: Scripted) -> None:
    assert (client.get("/readyz").status_code, client.get("/readyz").text) == (200, "ready")
    scripted.ready = (False, "not ready: kubernetes API unreachable (boom)")
    response = client.get("/readyz")
    assert (response.status_code, response.text) == (503, scripted.ready[1])


def test_metrics_exposes_the_admission_series(client: TestClient) -> None:
    client.post("/", json=review())
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert f'cocoon_webhook_admission_total{{decision="allow",handler="{HANDLER}"}}' in (
        response.text
    )
    assert "cocoon_webhook_admission_duration_seconds_bucket" in response.text


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        pytest.param(allow(), {"uid": "u-1", "allowed": True}, id="allow"),
        pytest.param(
            deny("no"),
            {"uid": "u-1", "allowed": False,
             "status": {"message": "no", "reason": "Forbidden", "code": 403}},
            id="deny",
        ),
        pytest.param(
            deny("cocoon-webhook: no").with_denial_reason(),
            {"uid": "u-1", "allowed": False,
             "status": {"message": "cocoon-webhook: no", "reason": "Forbidden", "code": 403},
             "auditAnnotations": {"reason": "no"}},
            id="deny-reason-without-prefix",
        ),
        pytest.param(
            replace(allow(), audit=(("vm-name", "vk-a-b-0"), ("slot", "0"))),
            {"uid": "u-1", "allowed": True,
             "auditAnnotations": {"vm-name": "vk-a-b-0", "slot": "0"}},
            id="audit",
        ),
        pytest.param(
            allow(warnings=("cocoon-webhook: careful",)),
            {"uid": "u-1", "allowed": True, "warnings": ["cocoon-webhook: careful"]},
            id="warnings",
        ),
    ],
)  # fmt: skip
def test_reply_envelope(
    client: TestClient, scripted: Scripted, verdict: Verdict, expected: dict[str, Any]
) -> None:
    scripted.verdict = verdict
    response = client.post("/", json=review(uid="u-1"))
    assert response.json() == {**V1, "response": expected}
    # Exactly the envelope: no echo of the request (the Go original doubled every payload).
    assert "request" not in response.json()


def test_lone_surrogates_are_read_as_go_reads_them(client: TestClient, scripted: Scripted) -> None:
    """An unpaired `\\ud800` escape is U+FFFD to Go's encoding/json, so to the API server; kept
    as a surrogate, it could not be written back as UTF-8 (a 500 before)."""
    scripted.verdict = deny("cocoon-webhook: no")
    body = json.dumps(review({"metadata": {"name": "x"}}, uid="u"))
    body = body.replace('"u"', '"u\\ud800"').replace('"x"', '"\\udc00\\ud83d\\ude00"')
    response = client.post("/", content=body.encode())
    assert response.status_code == 200
    assert response_of(response)["uid"] == "u\ufffd"
    # A paired escape stays the one character it encodes.
    assert scripted.seen[-1].request.object == {"metadata": {"name": "\ufffd\U0001f600"}}


def test_patch_is_base64_of_compact_json(client: TestClient, scripted: Scripted) -> None:
    ops = (PatchOp("/metadata/annotations/vm.cocoonstack.io~1name", "vk-ns-demo-0"),)
    scripted.verdict = patched(ops)
    response = response_of(client.post("/", json=review()))
    assert response["patchType"] == "JSONPatch"
    raw = base64.b64decode(response["patch"], validate=True)
    assert raw == (
        b'[{"op":"add","path":"/metadata/annotations/vm.cocoonstack.io~1name",'
        b'"value":"vk-ns-demo-0"}]'
    )


def test_exactly_one_sample_per_admission(client: TestClient, scripted: Scripted) -> None:
    before = {d: admission_count(HANDLER, d) for d in ("allow", "deny", "error")}
    scripted.verdict = deny("no")
    client.post("/", json=review())
    scripted.verdict = allow(Decision.ERROR)
    client.post("/", json=review())
    client.post("/", content=b"not json")
    after = {d: admission_count(HANDLER, d) for d in ("allow", "deny", "error")}
    assert after == {"allow": before["allow"], "deny": before["deny"] + 1,
                     "error": before["error"] + 2}  # fmt: skip


def test_a_crashing_decision_answers_with_the_policy_verdict(
    client: TestClient, scripted: Scripted
) -> None:
    scripted.raise_exc = RuntimeError("kaput")
    before = admission_count(HANDLER, "error")
    response = response_of(client.post("/", json=review(uid="u-9")))
    assert response == {
        "uid": "u-9",
        "allowed": False,
        "status": {"message": "internal: kaput", "reason": "Forbidden", "code": 403},
    }
    assert admission_count(HANDLER, "error") == before + 1


def test_decision_sees_decoded_request(client: TestClient, scripted: Scripted) -> None:
    body = review({"a": 1}, {"b": 2}, operation="CREATE", sub_resource="scale", dry_run=True)
    client.post("/", json=body)
    request = scripted.seen[-1].request
    assert (request.operation, request.sub_resource, request.dry_run) == ("CREATE", "scale", True)
    assert (request.object, request.old_object) == ({"a": 1}, {"b": 2})
    assert request.kind.kind == "Deployment" and request.resource.resource == "deployments"


def test_unknown_fields_are_ignored(client: TestClient) -> None:
    body = review()
    body["extra"] = {"x": 1}
    body["request"]["userInfo"] = {"username": "admin"}
    assert response_of(client.post("/", json=body))["allowed"] is True


def test_audit_keys_make_valid_annotations_under_every_webhook_name() -> None:
    """The API server files `<webhook name>/<key>` only when that is a qualified name
    (admission.Attributes.AddAnnotation's checkKeyFormat, which the emulator mirrors)."""
    from common.decisions import mutate
    from common.verdict import AUDIT_REASON
    from tests.kube_emulator.admission import _audit_annotations

    keys = [AUDIT_REASON, mutate.AUDIT_VM_NAME, mutate.AUDIT_NODE, mutate.AUDIT_SLOT,
            mutate.AUDIT_POOL, mutate.AUDIT_KEY]  # fmt: skip
    webhooks = Path(__file__).parents[1] / "knative" / "base" / "webhooks.yaml"
    names = [
        hook["name"]
        for doc in yaml.safe_load_all(webhooks.read_text())
        if doc
        for hook in doc.get("webhooks", [])
    ]
    assert len(names) == 4
    for name in names:
        assert len(_audit_annotations(name, dict.fromkeys(keys, "x"))) == len(keys)
