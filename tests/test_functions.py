"""The function targets as deployed: loaded by functions-framework, in-process and as processes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from bench.loadgen import free_port
from common import runtime
from common.models import EnvelopeError, parse_review
from tests.cluster import cocoon_pod, pod_review
from tests.functions_app import ROOT, function_client
from tests.helpers import admission_count, kubeconfig_for, response_of, review, scale, workload
from tests.test_offload import large_review
from tests.test_server_bounds import descendants, running

COCOONSET_OK = {
    "apiVersion": "cocoonset.cocoonstack.io/v1",
    "kind": "CocoonSet",
    "metadata": {"name": "agents", "namespace": "ns"},
    "spec": {"agent": {"image": "agent:1", "replicas": 2}},
}
TARGETS = {
    "validate": "/validate",
    "validate_cocoonset": "/validate-cocoonset",
}
FUZZ_TARGETS = {row.handler.value: row.path for row in runtime.ADMISSION_FUNCTIONS}
HIBERNATION = {
    "apiVersion": "cocoonset.cocoonstack.io/v1",
    "kind": "CocoonHibernation",
    "metadata": {"name": "agents-0", "namespace": "ns"},
    "spec": {"podRef": {"name": "agents-0"}, "desire": "Hibernate"},
}


def cocoonset_review(spec: Any, operation: str = "CREATE") -> dict[str, Any]:
    obj = {**COCOONSET_OK, "spec": spec}
    return review(obj, None, operation=operation, kind="CocoonSet",
                  group="cocoonset.cocoonstack.io", resource="cocoonsets")  # fmt: skip


@pytest.fixture(scope="module")
def validate_client() -> Iterator[TestClient]:
    with function_client("validate") as client:
        yield client


@pytest.fixture(scope="module")
def cocoonset_client() -> Iterator[TestClient]:
    with function_client("validate_cocoonset") as client:
        yield client


@pytest.mark.parametrize("path", ["/", "/validate"])
def test_validate_denies_cocoon_scale_down(validate_client: TestClient, path: str) -> None:
    before = admission_count("validate", "deny")
    response = response_of(validate_client.post(path, json=review(workload(1), workload(3))))
    assert response["allowed"] is False
    assert response["status"] == {
        "message": "cocoon-webhook: scale-down blocked for cocoon Deployment ns/demo (3 -> 1). "
        "Use a CocoonHibernation CR to suspend individual agents.",
        "reason": "Forbidden",
        "code": 403,
    }
    assert admission_count("validate", "deny") == before + 1


@pytest.mark.parametrize(
    ("body", "decision"),
    [
        pytest.param(review(workload(5), workload(3)), "allow", id="growing"),
        pytest.param(review(workload(1), workload(3), operation="CREATE"), "allow",
                     id="not-update"),
        pytest.param(review(workload(1), workload(3), kind="DaemonSet", resource="daemonsets"),
                     "allow", id="other-kind"),
        pytest.param(review(workload(1), workload(3), kind="ReplicaSet", resource="replicasets"),
                     "allow", id="replicaset"),
        pytest.param(review("x", workload(3)), "error", id="undecodable"),
        pytest.param(review(scale(1), scale(2), sub_resource="scale", kind="Scale",
                            resource="replicasets"), "allow", id="scale-of-other-parent"),
        pytest.param(review(scale(3), scale(2), sub_resource="scale", kind="Scale"), "allow",
                     id="scale-up-needs-no-parent"),
        pytest.param(review({"spec": {"replicas": "1"}}, scale(2), sub_resource="scale",
                            kind="Scale"), "error", id="scale-undecodable"),
    ],
)  # fmt: skip
def test_validate_allows(validate_client: TestClient, body: dict[str, Any], decision: str) -> None:
    before = admission_count("validate", decision)
    response = response_of(validate_client.post("/validate", json=body))
    assert response == {"uid": "uid-1", "allowed": True}
    assert admission_count("validate", decision) == before + 1


@pytest.mark.parametrize("path", ["/", "/validate-cocoonset"])
def test_cocoonset_function_denies_invalid_spec(cocoonset_client: TestClient, path: str) -> None:
    spec = {"agent": {"image": "", "os": "Linux"}, "toolboxes": [{"name": "1"}]}
    response = response_of(cocoonset_client.post(path, json=cocoonset_review(spec)))
    assert response["status"]["message"] == (
        "cocoon-webhook: invalid CocoonSet spec: spec.agent.image is required; "
        'spec.agent.os must be linux, windows, android, or macos, got "Linux"; '
        'spec.toolboxes[0].name "1" must not be purely numeric (conflicts with agent slot naming)'
        "; spec.toolboxes[0].image is required when mode is run or clone"
    )
    # SPEC 4: a deny reply is exactly uid, allowed and status (no audit annotation here).
    assert set(response) == {"uid", "allowed", "status"}


def test_cocoonset_function_allows_valid_and_denies_undecodable(
    cocoonset_client: TestClient,
) -> None:
    ok = response_of(cocoonset_client.post("/", json=cocoonset_review(COCOONSET_OK["spec"])))
    assert ok == {"uid": "uid-1", "allowed": True}
    body = cocoonset_review({"agent": {"image": "a", "replicas": "2"}})
    bad = response_of(cocoonset_client.post("/", json=body))
    assert bad["allowed"] is False
    assert bad["status"]["message"].startswith("cocoon-webhook: decode CocoonSet: spec.agent.")


@pytest.mark.parametrize("target", sorted(FUZZ_TARGETS))
def test_health_and_metrics_share_the_port(target: str) -> None:
    with function_client(target) as client:
        assert (client.get("/healthz").status_code, client.get("/healthz").text) == (200, "ok")
        assert "cocoon_webhook_admission_total" in client.get("/metrics").text
        assert client.get(FUZZ_TARGETS[target]).status_code == 405
        assert client.get("/nope").text == "404 page not found"


def test_cocoonset_is_ready_without_an_api_server() -> None:
    with function_client("validate_cocoonset", KUBECONFIG="/nonexistent") as client:
        assert (client.get("/readyz").status_code, client.get("/readyz").text) == (200, "ready")


def api_reachable_sample(metrics_text: str) -> str | None:
    for line in metrics_text.splitlines():
        if line.startswith("cocoon_webhook_kube_api_reachable "):
            return line.split()[1]
    return None


@pytest.mark.parametrize(
    ("target", "readiness"),
    [
        pytest.param("validate", (200, "ready"), id="validate"),
        # mutate waits for its caches' first sync only (issue 10); see the test below for after.
        pytest.param(
            "mutate",
            (503, "not ready: caches not synced yet (pods, nodes, configmaps)"),
            id="mutate",
        ),
    ],
)
def test_ready_without_an_api_server_which_the_metrics_show(
    tmp_path: Path, target: str, readiness: tuple[int, str]
) -> None:
    """An unreachable API must not take a replica out of rotation (docs/operations.md), except
    a mutate replica that never synced its caches."""
    port = free_port()  # nothing listens there
    kubeconfig = kubeconfig_for(tmp_path / "config", f"http://127.0.0.1:{port}")
    with function_client(target, KUBECONFIG=kubeconfig) as client:
        response = client.get("/readyz")
        assert (response.status_code, response.text) == readiness
        # The probe /readyz started in the background finds the API unreachable.
        deadline = time.monotonic() + 30
        while api_reachable_sample(client.get("/metrics").text) != "0.0":
            assert time.monotonic() < deadline, "the API probe never reported"
            time.sleep(0.05)
        metrics = client.get("/metrics").text
        assert "cocoon_webhook_kube_api_last_success_age_seconds +Inf" in metrics
        assert client.get("/readyz").status_code == readiness[0]


def test_mutate_stays_ready_when_the_api_goes_after_its_first_sync(tmp_path: Path) -> None:
    """Once synced, mutate stays in rotation through an API outage: its silent caches are not
    trusted (direct reads, which fail), and pods are admitted fail-open at once."""
    from common import runtime
    from tests.functions_app import wait_ready
    from tests.kube_emulator.launcher import EmulatorProcess

    emulator = EmulatorProcess.start(tmp_path, seed="namespaces")
    try:
        env = {"KUBECONFIG": emulator.kubeconfig, "CACHE_MAX_SILENCE": "1s"}
        with function_client("mutate", **env) as client:
            wait_ready(client)
            emulator.stop()
            deadline = time.monotonic() + 30
            while len(runtime.process().caches.stale()) < 3:
                assert time.monotonic() < deadline, "the caches never went silent"
                time.sleep(0.05)
            assert (client.get("/readyz").status_code, client.get("/readyz").text) == (200, "ready")
            response = response_of(client.post("/mutate", json=pod_review(cocoon_pod(name="p"))))
            assert response["allowed"] is True
            assert "kubernetes API unreachable" in response["warnings"][0]
    finally:
        emulator.stop()


def test_bad_setting_stops_the_module_load() -> None:
    with pytest.raises(SystemExit) as stopped, function_client("validate", REAPER_GRACE="300"):
        pass
    assert stopped.value.code == 1


# --- bad input never crashes: property-based ------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
request_fields = st.fixed_dictionaries(
    {},
    optional={
        "uid": st.one_of(st.text(max_size=5), json_values),
        "operation": st.sampled_from(["CREATE", "UPDATE", "DELETE", ""]) | json_values,
        "kind": st.fixed_dictionaries({"kind": st.sampled_from(["Deployment", "CocoonSet",
                                                                "Scale", "Pod",
                                                                "CocoonHibernation"])})
        | json_values,
        "resource": st.fixed_dictionaries({"resource": st.sampled_from(
            ["deployments", "statefulsets", "cocoonsets", "cocoonhibernations"])}) | json_values,
        "subResource": st.sampled_from(["", "scale"]) | json_values,
        "object": json_values | st.just(workload(1)) | st.just(COCOONSET_OK)
        | st.just(cocoon_pod(name="fuzz")) | st.just(cocoon_pod(rs="fuzz-6d4b7c9f8"))
        | st.builds(lambda pool: cocoon_pod(name="p", pool=pool), st.text(max_size=70))
        | st.just(HIBERNATION),
        "oldObject": json_values | st.just(workload(3)),
        "dryRun": st.booleans() | json_values,
        "namespace": st.text(max_size=5) | json_values,
        "name": st.text(max_size=5) | json_values,
    },
)  # fmt: skip
envelopes = st.fixed_dictionaries(
    {"apiVersion": st.just("admission.k8s.io/v1") | json_values,
     "kind": st.just("AdmissionReview") | json_values},
    optional={"request": request_fields | json_values},
)  # fmt: skip


def _check_reply(response: Any, sent: bytes) -> None:
    assert response.status_code in (200, 400), response.text
    try:
        body = json.loads(sent)
    except ValueError:
        body = None
    if response.status_code == 400:
        assert response.text and "\n" not in response.text
        assert "Traceback" not in response.text
        return
    # Only an AdmissionReview gets a verdict, and the verdict answers that review.
    assert isinstance(body, dict), sent
    assert body["apiVersion"] == "admission.k8s.io/v1"
    assert body["kind"] == "AdmissionReview"
    request = body["request"]
    assert isinstance(request, dict)
    document = response.json()
    assert document["apiVersion"] == "admission.k8s.io/v1"
    assert document["kind"] == "AdmissionReview"
    answer = document["response"]
    assert answer["uid"] == request["uid"]
    assert isinstance(answer["allowed"], bool)
    if not answer["allowed"]:
        assert answer["status"]["message"].startswith("cocoon-webhook: "), answer
    if "patch" in answer:
        assert answer["patchType"] == "JSONPatch"
        operations = json.loads(base64.b64decode(answer["patch"]))
        assert operations
        assert all(op["op"] in {"add", "replace"} for op in operations), operations


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=envelopes, target=st.sampled_from(sorted(FUZZ_TARGETS)))
def test_random_reviews_get_an_answer(body: dict[str, Any], target: str) -> None:
    sent = json.dumps(body).encode()
    _check_reply(_CLIENTS[target].post(FUZZ_TARGETS[target], content=sent), sent)


@settings(max_examples=100, deadline=None)
@given(
    raw=st.binary(max_size=64) | st.text(max_size=64).map(str.encode),
    cut=st.integers(min_value=0, max_value=400),
    target=st.sampled_from(sorted(FUZZ_TARGETS)),
)
def test_mangled_bodies_get_an_answer(raw: bytes, cut: int, target: str) -> None:
    valid = json.dumps(review(workload(1), workload(3))).encode()
    body = valid[:cut] + raw + valid[cut:]
    _check_reply(_CLIENTS[target].post(FUZZ_TARGETS[target], content=body), body)


_CLIENTS: dict[str, TestClient] = {}


@pytest.fixture(scope="module")
def mutate_client(kube_emulator: Any) -> Iterator[TestClient]:
    # A real API behind it, so fuzzed pods that get as far as a reservation really make one.
    with function_client(
        "mutate", KUBECONFIG=kube_emulator.kubeconfig, MUTATE_DEADLINE="1s"
    ) as client:
        yield client


@pytest.fixture(scope="module")
def hibernation_client(kube_emulator: Any) -> Iterator[TestClient]:
    # A real API behind it: fuzzed reviews that get as far as the LIST really list.
    with function_client(
        "validate_cocoonhibernation", KUBECONFIG=kube_emulator.kubeconfig
    ) as client:
        yield client


@pytest.fixture(scope="module", autouse=True)
def _fuzz_clients(
    validate_client: TestClient,
    cocoonset_client: TestClient,
    mutate_client: TestClient,
    hibernation_client: TestClient,
) -> None:
    _CLIENTS.update(
        {"validate": validate_client, "validate_cocoonset": cocoonset_client,
         "mutate": mutate_client, "validate_cocoonhibernation": hibernation_client}
    )  # fmt: skip


# --- a real functions-framework process on 127.0.0.1 ----------------------------------------


def _post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _serve(target: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [str(Path(sys.executable).parent / "functions-framework"),
               "--source", f"functions/{target}.py", "--target", target,
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    return process, port


def _denied_body(target: str) -> dict[str, Any]:
    """A review each target denies without calling the API."""
    if target == "validate":
        return review(workload(1), workload(3))
    if target == "validate_cocoonhibernation":
        misnamed = {**HIBERNATION, "metadata": {"name": "nap", "namespace": "ns"}}
        return review(misnamed, None, operation="CREATE", kind="CocoonHibernation",
                      group="cocoonset.cocoonstack.io", resource="cocoonhibernations")  # fmt: skip
    return cocoonset_review({"agent": {"image": ""}})


def _wait_healthy(process: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            status, body = _post(base + "/healthz", b"")
            break
        except OSError:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "function did not start"
            time.sleep(0.1)
    assert (status, body) == (200, b"ok")


@pytest.mark.parametrize("target", [*sorted(TARGETS), "validate_cocoonhibernation"])
def test_function_runs_under_functions_framework(target: str) -> None:
    process, port = _serve(target, {})
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(process, base)
        path = FUZZ_TARGETS[target]
        status, reply = _post(base + path, json.dumps(_denied_body(target)).encode())
        assert status == 200
        assert json.loads(reply)["response"]["allowed"] is False
        status, reply = _post(base + path, b"{")
        assert status == 400
        assert reply.startswith(b"decode admission review: ")
    finally:
        process.terminate()
        process.wait(10)


def test_function_process_decodes_a_large_review_in_workers_that_stop_with_it() -> None:
    # The functions share the standalone server's admission shell, so its decoding workers:
    # they must start and stop under functions-framework (gunicorn's worker) as well.
    body = large_review(1)
    process, port = _serve("validate", {})
    workers: set[int] = set()
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(process, base)
        status, reply = _post(base + "/validate", body)
        assert status == 200
        assert "scale-down" in json.loads(reply)["response"]["status"]["message"]
        workers = descendants(process.pid)
        assert workers, "no decoding process was started"
        status, reply = _post(base + "/validate", body[:-1])
        assert (status, reply.decode()) == (400, _inline_reason(body[:-1]))
    finally:
        process.terminate()
        process.wait(10)
    deadline = time.monotonic() + 30
    while any(map(running, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(running, workers)), "decoding processes outlived the function"


def _inline_reason(body: bytes) -> str:
    with pytest.raises(EnvelopeError) as error:
        parse_review(body)
    return str(error.value)


def test_function_process_refuses_a_bad_setting() -> None:
    process, _ = _serve("validate", {"MUTATE_DEADLINE": "9s"})
    out, _ = process.communicate(timeout=30)
    assert process.returncode != 0
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert [line["msg"] for line in lines] == ['invalid MUTATE_DEADLINE "9s": must be < 5s']


def test_every_row_of_the_table_is_a_loadable_function() -> None:
    """functions-framework loads `functions/<handler>.py` and calls the function of that name:
    a row without one (or a module the table does not name) would deploy nothing."""
    modules = {path.stem for path in (ROOT / "functions").glob("*.py") if path.stem != "__init__"}
    assert modules == {row.handler.value for row in runtime.FUNCTIONS}
    for row in runtime.FUNCTIONS:
        source = (ROOT / "functions" / f"{row.handler.value}.py").read_text()
        assert f"async def {row.handler.value}(request" in source
        assert f"http_handler(Handler.{row.handler.name})" in source
