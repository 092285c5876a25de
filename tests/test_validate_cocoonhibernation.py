"""validate_cocoonhibernation (issue 15): the pure rows, then the function against the emulator
with our CocoonHibernation CRD installed, LIST faults included."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from common import kube as kube_module
from common.decisions.validate_cocoonhibernation import (
    Hibernation,
    list_failed,
    namespace_problem,
    precheck,
    uniqueness_verdict,
)
from common.verdict import Decision, Verdict
from tests.functions_app import function_client
from tests.helpers import admission_count, response_of, review
from tests.helpers.demo import hibernation as sandbox_hibernation
from tests.kube_emulator.seed import COCOON_GROUP, COCOONHIBERNATION_CRD
from tests.sandbox import sandbox

HANDLER = "validate_cocoonhibernation"
LIST_PATH = f"/apis/{COCOON_GROUP}/v1/namespaces/ns/cocoonhibernations"
LIST_TIMED_OUT = (
    "cocoon-webhook: cannot verify podRef uniqueness: list cocoonhibernations ns: timeout after "
)


def hibernation(
    name: str = "agent-0", pod: Any = "agent-0", *, desire: Any = "Hibernate", **metadata: Any
) -> dict[str, Any]:
    return {
        "apiVersion": f"{COCOON_GROUP}/v1",
        "kind": "CocoonHibernation",
        "metadata": {"name": name, **metadata},
        "spec": {"podRef": {"name": pod}, "desire": desire},
    }


def live(doc: str = "agent-0", pod: str = "agent-0") -> dict[str, Any]:
    return {**hibernation(doc, pod), "metadata": {"name": doc, "namespace": "ns"}}


def terminating(doc: str = "agent-0", pod: str = "agent-0") -> dict[str, Any]:
    item = live(doc, pod)
    item["metadata"]["deletionTimestamp"] = "2026-12-06T17:00:00Z"
    return item


LIVE_DENIAL = (
    'cocoon-webhook: pod "agent-0" already has a live CocoonHibernation "agent-0"; '
    "flip its spec.desire instead of creating a second CR"
)
TERMINATING_DENIAL = (
    'cocoon-webhook: pod "agent-0"\'s CocoonHibernation "agent-0" is still terminating; '
    "retry after its cleanup finishes"
)

# --- pure rows ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "obj", "verdict"),
    [
        # Row 1: CREATE only.
        *[
            pytest.param(op, hibernation("a", "b"), Verdict(True, Decision.ALLOW), id=f"1-{op}")
            for op in ("UPDATE", "DELETE", "CONNECT", "create")
        ],
        # Row 2: undecodable.
        pytest.param(
            "CREATE",
            None,
            Verdict(False, Decision.ERROR,
                    "cocoon-webhook: decode CocoonHibernation: object is missing"),
            id="2-missing",
        ),
        pytest.param(
            "CREATE",
            [],
            Verdict(False, Decision.ERROR,
                    "cocoon-webhook: decode CocoonHibernation: object: want object, got array"),
            id="2-not-an-object",
        ),
        pytest.param(
            "CREATE",
            {**hibernation(), "metadata": "x"},
            Verdict(False, Decision.ERROR,
                    "cocoon-webhook: decode CocoonHibernation: metadata: want object, got string"),
            id="2-metadata",
        ),
        pytest.param(
            "CREATE",
            hibernation(name=7),  # type: ignore[arg-type]
            Verdict(False, Decision.ERROR,
                    "cocoon-webhook: decode CocoonHibernation: metadata.name: want string, "
                    "got number 7"),
            id="2-name",
        ),
        pytest.param(
            "CREATE",
            {**hibernation(), "spec": {"podRef": "agent-0"}},
            Verdict(False, Decision.ERROR,
                    "cocoon-webhook: decode CocoonHibernation: spec.podRef: want object, "
                    "got string"),
            id="2-pod-ref",
        ),
        pytest.param(
            "CREATE",
            hibernation(pod=["agent-0"]),
            Verdict(False, Decision.ERROR,
                    "cocoon-webhook: decode CocoonHibernation: spec.podRef.name: want string, "
                    "got array"),
            id="2-pod-ref-name",
        ),
        pytest.param(
            "CREATE",
            hibernation(desire=True),
            Verdict(False, Decision.ERROR,
                    "cocoon-webhook: decode CocoonHibernation: spec.desire: want string, got bool"),
            id="2-desire",
        ),
        # Row 3: named after the pod.
        pytest.param(
            "CREATE",
            hibernation("nap", "agent-0"),
            Verdict(False, Decision.DENY,
                    'cocoon-webhook: metadata.name "nap" must equal spec.podRef.name "agent-0" '
                    "(one CocoonHibernation per pod, named after it)"),
            id="3-name-differs",
        ),
        pytest.param(
            "CREATE",
            {**hibernation(), "metadata": {"generateName": "agent-0-"}},
            Verdict(False, Decision.DENY,
                    'cocoon-webhook: metadata.name "" must equal spec.podRef.name "agent-0" '
                    "(one CocoonHibernation per pod, named after it)"),
            id="3-generate-name",
        ),
        pytest.param(
            "CREATE",
            hibernation("a\tb", "a"),
            Verdict(False, Decision.DENY,
                    'cocoon-webhook: metadata.name "a\\tb" must equal spec.podRef.name "a" '
                    "(one CocoonHibernation per pod, named after it)"),
            id="3-go-quoted",
        ),
    ],
)  # fmt: skip
def test_precheck_verdicts(operation: str, obj: Any, verdict: Verdict) -> None:
    assert precheck(operation, obj, "ns") == verdict


def test_precheck_passes_a_well_named_object_on() -> None:
    assert precheck("CREATE", hibernation(), "ns") == Hibernation("agent-0", "ns", "agent-0")
    # Unknown fields and nulls are ignored; the object's namespace stands in for a missing one.
    obj = {**hibernation(namespace="own"), "status": {"phase": 1}, "spec": None}
    obj["metadata"]["name"] = ""
    assert precheck("CREATE", obj, "") == Hibernation("", "own", "")


@pytest.mark.parametrize(
    ("existing", "verdict"),
    [
        pytest.param([], Verdict(True, Decision.ALLOW), id="6-none"),
        pytest.param([live("agent-1", "agent-1")], Verdict(True, Decision.ALLOW), id="6-other-pod"),
        pytest.param([live()], Verdict(False, Decision.DENY, LIVE_DENIAL), id="5-live"),
        pytest.param(
            [live("legacy", "agent-0")],
            Verdict(False, Decision.DENY,
                    'cocoon-webhook: pod "agent-0" already has a live CocoonHibernation '
                    '"legacy"; flip its spec.desire instead of creating a second CR'),
            id="5-live-named-before-the-rule",
        ),
        pytest.param(
            [terminating()], Verdict(False, Decision.DENY, TERMINATING_DENIAL), id="5-terminating"
        ),
        pytest.param(
            [terminating(), live("legacy", "agent-0")],
            Verdict(False, Decision.DENY, TERMINATING_DENIAL),
            id="5-first-match-decides",
        ),
        pytest.param(
            ["x", {"spec": {"podRef": {"name": 1}}}, {"spec": []}, {"metadata": None}, live()],
            Verdict(False, Decision.DENY, LIVE_DENIAL),
            id="5-unreadable-items-skipped",
        ),
        pytest.param(
            [{"metadata": {"name": "agent-0"}, "spec": {"podRef": {"name": "agent-00"}}}],
            Verdict(True, Decision.ALLOW),
            id="6-name-alone-is-no-match",
        ),
    ],
)  # fmt: skip
def test_uniqueness_verdict(existing: list[Any], verdict: Verdict) -> None:
    assert uniqueness_verdict(Hibernation("agent-0", "ns", "agent-0"), existing) == verdict


@pytest.mark.parametrize(
    ("namespace", "problem"),
    [
        pytest.param("team-a", None, id="name"),
        pytest.param("", "the review names no namespace", id="empty"),
        pytest.param("a/../b", 'namespace "a/../b" is not a namespace name', id="path"),
        pytest.param("ns?x=1", 'namespace "ns?x=1" is not a namespace name', id="query"),
        pytest.param("a" * 64, f'namespace "{"a" * 64}" is not a namespace name', id="too-long"),
    ],
)
def test_only_a_namespace_name_is_listed(namespace: str, problem: str | None) -> None:
    assert namespace_problem(namespace) == problem


def test_list_failed_is_an_error_denial() -> None:
    assert list_failed("list cocoonhibernations ns: timeout after 2s") == Verdict(
        False,
        Decision.ERROR,
        "cocoon-webhook: cannot verify podRef uniqueness: "
        "list cocoonhibernations ns: timeout after 2s",
    )


# --- the function against the emulator ---------------------------------------------------------


@pytest.fixture
def custom(emulator: Any) -> Any:
    api = emulator.api_client()
    kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": "ns"}})
    kubernetes.client.ApiextensionsV1Api(api).create_custom_resource_definition(
        COCOONHIBERNATION_CRD
    )
    emulator.clear_requests()
    return kubernetes.client.CustomObjectsApi(api)


@pytest.fixture
def function(emulator: Any) -> Iterator[TestClient]:
    with function_client(HANDLER, KUBECONFIG=emulator.kubeconfig) as client:
        yield client


def store(custom: Any, doc: str, pod: str, **metadata: Any) -> None:
    custom.create_namespaced_custom_object(
        COCOON_GROUP, "v1", "ns", "cocoonhibernations", hibernation(doc, pod, **metadata)
    )


def admit(function: TestClient, obj: Any, path: str = "/validate-cocoonhibernation") -> Any:
    name = obj["metadata"].get("name", "") if isinstance(obj, dict) else ""
    body = review(obj, None, operation="CREATE", kind="CocoonHibernation", group=COCOON_GROUP,
                  resource="cocoonhibernations", name=name)  # fmt: skip
    return response_of(function.post(path, json=body))


def lists(emulator: Any) -> list[dict[str, Any]]:
    return [r for r in emulator.requests() if (r["method"], r["path"]) == ("GET", LIST_PATH)]


@pytest.mark.parametrize("path", ["/", "/validate-cocoonhibernation"])
def test_first_hibernation_of_a_pod_is_allowed_after_one_list(
    function: TestClient, custom: Any, emulator: Any, path: str
) -> None:
    store(custom, "agent-1", "agent-1")
    emulator.clear_requests()
    before = admission_count(HANDLER, "allow")
    assert admit(function, hibernation(), path) == {"uid": "uid-1", "allowed": True}
    assert [r["status"] for r in lists(emulator)] == [200]
    assert admission_count(HANDLER, "allow") == before + 1


def test_second_hibernation_of_a_pod_is_denied(
    function: TestClient, custom: Any, emulator: Any
) -> None:
    # Stored before the naming rule: only the LIST can find it.
    store(custom, "legacy", "agent-0")
    before = admission_count(HANDLER, "deny")
    response = admit(function, hibernation())
    assert response["status"] == {
        "message": 'cocoon-webhook: pod "agent-0" already has a live CocoonHibernation '
        '"legacy"; flip its spec.desire instead of creating a second CR',
        "reason": "Forbidden",
        "code": 403,
    }
    assert admission_count(HANDLER, "deny") == before + 1


def test_terminating_hibernation_asks_to_retry(
    function: TestClient, custom: Any, emulator: Any
) -> None:
    store(custom, "agent-0", "agent-0", finalizers=["cocoonset.cocoonstack.io/hibernation"])
    custom.delete_namespaced_custom_object(
        COCOON_GROUP, "v1", "ns", "cocoonhibernations", "agent-0"
    )
    response = admit(function, hibernation())
    assert response["status"]["message"] == TERMINATING_DENIAL


def test_other_namespaces_do_not_count(function: TestClient, custom: Any, emulator: Any) -> None:
    custom.create_namespaced_custom_object(
        COCOON_GROUP, "v1", "default", "cocoonhibernations", hibernation()
    )
    assert admit(function, hibernation())["allowed"] is True


def test_list_reads_every_page(
    function: TestClient, custom: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube_module, "LIST_PAGE_SIZE", 2)
    for index in range(4):
        store(custom, f"agent-{index + 1}", f"agent-{index + 1}")
    store(custom, "zz-legacy", "agent-0")  # names sort: this one is on the last page
    emulator.clear_requests()
    response = admit(function, hibernation())
    assert 'already has a live CocoonHibernation "zz-legacy"' in response["status"]["message"]
    pages = lists(emulator)
    assert len(pages) == 3
    assert ["continue" in page["query"] for page in pages] == [False, True, True]
    assert all(page["query"]["limit"] == "2" for page in pages)


def settled_lists(emulator: Any, expected: int) -> list[dict[str, Any]]:
    """The LIST GETs once `expected` are logged: a timed-out attempt is logged by the emulator
    only when its delay is over."""
    deadline = time.monotonic() + 10
    while len(found := lists(emulator)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def retries(cause: str) -> float:
    value = REGISTRY.get_sample_value(
        "cocoon_webhook_api_retries_total", {"component": HANDLER, "cause": cause}
    )
    return value or 0.0


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        pytest.param({"status": 500}, "500", id="500"),
        pytest.param({"status": 429}, "429", id="429"),
        pytest.param({"drop": True}, "no_answer", id="dropped"),
        pytest.param({"delay": 3.0}, "no_answer", id="slow"),
    ],
)
def test_one_transient_list_failure_is_retried(
    function: TestClient, custom: Any, emulator: Any, fault: dict[str, Any], cause: str
) -> None:
    store(custom, "legacy", "agent-0")
    emulator.fault("GET", LIST_PATH, **fault)
    emulator.clear_requests()
    before = retries(cause)
    message = admit(function, hibernation())["status"]["message"]
    assert 'already has a live CocoonHibernation "legacy"' in message
    assert len(settled_lists(emulator, 2)) == 2
    assert retries(cause) == before + 1


def test_list_error_fails_closed(function: TestClient, custom: Any, emulator: Any) -> None:
    emulator.fault("GET", LIST_PATH, status=500, times=2)
    before = admission_count(HANDLER, "error")
    message = admit(function, hibernation())["status"]["message"]
    assert message.startswith(
        "cocoon-webhook: cannot verify podRef uniqueness: "
        "list cocoonhibernations ns: 500 InternalError: "
    )
    assert "\n" not in message
    assert admission_count(HANDLER, "error") == before + 1


def test_slow_lists_deny_within_the_webhook_timeout(
    function: TestClient, custom: Any, emulator: Any
) -> None:
    emulator.fault("GET", LIST_PATH, delay=3.0, times=2)
    started = time.monotonic()
    message = admit(function, hibernation())["status"]["message"]
    assert time.monotonic() - started < 5  # the API server gives up on us after 5 s
    assert message.startswith(LIST_TIMED_OUT)
    assert len(settled_lists(emulator, 2)) == 2


def test_timeout_covers_all_pages_together(
    function: TestClient, custom: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube_module, "LIST_PAGE_SIZE", 1)
    for name in ("agent-1", "agent-2", "agent-3"):
        store(custom, name, name)
    # Each page alone answers within an attempt's 2 s, but no attempt gets through all of them.
    emulator.fault("GET", LIST_PATH, delay=1.5, times=10)
    started = time.monotonic()
    message = admit(function, hibernation())["status"]["message"]
    assert time.monotonic() - started < 5
    assert message.startswith(LIST_TIMED_OUT)


def test_dropped_lists_fail_closed(function: TestClient, custom: Any, emulator: Any) -> None:
    emulator.fault("GET", LIST_PATH, drop=True, times=4)
    response = admit(function, hibernation())
    assert response["allowed"] is False
    assert response["status"]["message"].startswith(
        "cocoon-webhook: cannot verify podRef uniqueness: list cocoonhibernations ns: "
    )


def test_missing_crd_fails_closed(function: TestClient, emulator: Any) -> None:
    kubernetes.client.CoreV1Api(emulator.api_client()).create_namespace(
        {"metadata": {"name": "ns"}}
    )
    message = admit(function, hibernation())["status"]["message"]
    assert message.startswith(
        "cocoon-webhook: cannot verify podRef uniqueness: list cocoonhibernations ns: 404 NotFound"
    )
    assert len(lists(emulator)) == 1  # an answer, not retried


def test_decisions_before_the_list_make_no_call(
    function: TestClient, custom: Any, emulator: Any
) -> None:
    assert admit(function, hibernation("nap", "agent-0"))["allowed"] is False
    body = review(hibernation(), None, operation="UPDATE", kind="CocoonHibernation",
                  group=COCOON_GROUP, resource="cocoonhibernations")  # fmt: skip
    assert response_of(function.post("/", json=body))["allowed"] is True
    assert lists(emulator) == []


def test_namespace_comes_from_the_review_else_the_object(
    function: TestClient, custom: Any, emulator: Any
) -> None:
    store(custom, "legacy", "agent-0")
    body = review(hibernation(namespace="ns"), None, operation="CREATE", namespace="",
                  kind="CocoonHibernation", group=COCOON_GROUP,
                  resource="cocoonhibernations")  # fmt: skip
    assert "already has a live" in response_of(function.post("/", json=body))["status"]["message"]
    body["request"]["object"]["metadata"].pop("namespace")
    before = admission_count(HANDLER, "error")
    assert response_of(function.post("/", json=body))["status"]["message"] == (
        "cocoon-webhook: cannot verify podRef uniqueness: the review names no namespace"
    )
    assert admission_count(HANDLER, "error") == before + 1
    assert len(lists(emulator)) == 1
    # Whatever a caller claims, only a namespace name goes into the LIST's path.
    body["request"]["namespace"] = "ns/../../../api/v1/secrets?x="
    emulator.clear_requests()
    message = response_of(function.post("/", json=body))["status"]["message"]
    assert message.startswith("cocoon-webhook: cannot verify podRef uniqueness: namespace ")
    assert [r for r in emulator.requests() if not r["path"].startswith("/_emulator")] == []


def test_readiness_and_metrics(function: TestClient, custom: Any) -> None:
    assert (function.get("/readyz").status_code, function.get("/readyz").text) == (200, "ready")
    assert function.get("/healthz").text == "ok"
    admit(function, hibernation())
    sample = 'cocoon_webhook_admission_total{decision="allow",handler="validate_cocoonhibernation"}'
    assert sample in function.get("/metrics").text


# --- through a real kube-apiserver's admission chain -----------------------------------------


@pytest.mark.control_plane
def test_through_a_real_api_server(tmp_path: Path) -> None:
    """Our CocoonHibernation CRD on kube-apiserver, the standalone install's webhook on it: the
    API server's own schema, CEL rule, dry run and finalizers around our denials."""
    with sandbox(tmp_path, preferred=(0, 0), cluster="real") as box:
        api = box.cluster.api_client()
        kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": "hib"}})
        custom = kubernetes.client.CustomObjectsApi(api)
        path = (COCOON_GROUP, "v1", "hib", "cocoonhibernations")

        def refused(obj: dict[str, Any], status: int = 403, **options: Any) -> str:
            with pytest.raises(kubernetes.client.ApiException) as caught:
                custom.create_namespaced_custom_object(*path, obj, **options)
            assert caught.value.status == status, caught.value.body
            message: str = json.loads(caught.value.body)["message"]
            return message

        denied = (
            'admission webhook "cocoonhibernations.validate.cocoonstack.io" denied the request: '
        )
        # A dry run is judged too, and stores nothing.
        custom.create_namespaced_custom_object(*path, sandbox_hibernation("a-0", "a-0", "hib"),
                                               dry_run="All")  # fmt: skip
        assert custom.list_namespaced_custom_object(*path)["items"] == []
        stored = sandbox_hibernation("a-0", "a-0", "hib")
        stored["metadata"]["finalizers"] = ["cocoonset.cocoonstack.io/hibernation"]
        custom.create_namespaced_custom_object(*path, stored)
        assert refused(sandbox_hibernation("nap", "a-0", "hib")) == denied + (
            'cocoon-webhook: metadata.name "nap" must equal spec.podRef.name "a-0" '
            "(one CocoonHibernation per pod, named after it)"
        )
        # Before the API server's own AlreadyExists: the answer says what to do instead.
        assert refused(sandbox_hibernation("a-0", "a-0", "hib")) == denied + (
            'cocoon-webhook: pod "a-0" already has a live CocoonHibernation "a-0"; '
            "flip its spec.desire instead of creating a second CR"
        )
        custom.delete_namespaced_custom_object(*path[:3], path[3], "a-0")
        assert refused(sandbox_hibernation("a-0", "a-0", "hib")) == denied + (
            'cocoon-webhook: pod "a-0"\'s CocoonHibernation "a-0" is still terminating; '
            "retry after its cleanup finishes"
        )
        # What the CRD says is the API server's to enforce, after the webhook allowed it.
        bad_desire = sandbox_hibernation("a-1", "a-1", "hib")
        bad_desire["spec"]["desire"] = "Sleep"
        assert "spec.desire" in refused(bad_desire, status=422)
        custom.create_namespaced_custom_object(*path, sandbox_hibernation("a-1", "a-1", "hib"))
        with pytest.raises(kubernetes.client.ApiException) as immutable:
            custom.patch_namespaced_custom_object(
                *path[:3], path[3], "a-1", {"spec": {"podRef": {"name": "a-2"}}}
            )
        assert immutable.value.status == 422
        assert "spec.podRef is immutable" in json.loads(immutable.value.body)["message"]
