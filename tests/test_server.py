"""The standalone server (SPEC 11) as a process: TLS, routing, reload, shutdown, startup failures.

Each server runs as `python -m common.server` against the API emulator (`--seed sandbox`), with
a throwaway CA; every HTTPS call verifies the server against that CA. The reaper loop is
tested in-process, where a scripted sweep can take longer than the interval.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from common.server import SHUTDOWN_GRACE_S, ReaperLoop
from tests.helpers import COCOON_TOLERATION, patch_of, review, scale, wait_until, workload
from tests.helpers.demo import hibernation
from tests.helpers.server import Pki, ServerExited, ServerProcess, server_env
from tests.kube_emulator.launcher import EmulatorProcess

NOT_FOUND = "404 page not found"
AFFINITY_CONFIGMAP = "/api/v1/namespaces/cocoon-system/configmaps/cocoon-affinity-default"


# --- fixtures and clients ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    handle = EmulatorProcess.start(
        tmp_path_factory.mktemp("server-emulator"), seed="sandbox", name="server"
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki")


class Server:
    """A running server process and HTTPS/HTTP clients for its two ports."""

    def __init__(self, process: ServerProcess, pki: Pki) -> None:
        self.process = process
        self.pki = pki
        self.port, self.metrics_port = process.wait_listening()

    def tls_context(self, **versions: ssl.TLSVersion) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_file))
        for attribute, version in versions.items():
            setattr(context, attribute, version)
        return context

    def https(
        self, method: str, path: str, body: Any = None, *, timeout: float = 10
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.tls_context(), timeout=timeout
        )
        return _exchange(connection, method, path, body)

    def http_metrics(self, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        return _exchange(connection, method, path, None)

    def serial(self) -> int:
        """The serial of the certificate a new, CA-verified connection is served."""
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw,
            self.tls_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


def _exchange(
    connection: http.client.HTTPConnection, method: str, path: str, body: Any
) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@contextlib.contextmanager
def running(env: dict[str, str], pki: Pki) -> Iterator[Server]:
    process = ServerProcess.start(env)
    try:
        yield Server(process, pki)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def server(cluster: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests that only read; it must still stop cleanly at the end."""
    pki = Pki.create(tmp_path_factory.mktemp("pki"))
    process = ServerProcess.start(server_env(cluster.kubeconfig, pki))
    try:
        yield Server(process, pki)
    finally:
        assert process.stop() == 0, process.output[-10:]


def _admission(reply: tuple[int, dict[str, str], bytes]) -> dict[str, Any]:
    status, headers, body = reply
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    document = json.loads(body)
    assert (document["apiVersion"], document["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    result: dict[str, Any] = document["response"]
    return result


def cocoon_pod(generate_name: str = "demo-5d8c7b9f6-") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": generate_name,
            "namespace": "default",
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": generate_name[:-1],
                 "uid": "u-1", "controller": True}
            ],
        },
        "spec": {"containers": [{"name": "agent", "image": "agent:1"}],
                 "tolerations": [COCOON_TOLERATION]},
    }  # fmt: skip


def pod_review(uid: str = "uid-pod", generate_name: str = "demo-5d8c7b9f6-") -> dict[str, Any]:
    return review(cocoon_pod(generate_name), None, operation="CREATE", kind="Pod", group="",
                  resource="pods", namespace="default", name="", uid=uid)  # fmt: skip


# --- admission over TLS, routing ---------------------------------------------------------------


def test_three_admission_paths_answer_over_verified_tls(server: Server) -> None:
    mutated = _admission(server.https("POST", "/mutate", pod_review()))
    assert mutated["allowed"] is True
    ops = {op["path"]: op["value"] for op in patch_of(mutated)}
    assert ops["/metadata/annotations/vm.cocoonstack.io~1name"].startswith("vk-default-demo-")
    assert ops["/spec/nodeName"] in ("cocoon-a", "cocoon-b")

    denied = _admission(server.https("POST", "/validate", review(workload(1), workload(3))))
    assert denied["allowed"] is False
    assert denied["status"]["code"] == 403
    assert denied["status"]["message"].startswith("cocoon-webhook: scale-down blocked")

    cocoonset = {
        "apiVersion": "cocoonset.cocoonstack.io/v1",
        "kind": "CocoonSet",
        "metadata": {"name": "a", "namespace": "ns"},
        "spec": {"agent": {"image": ""}},
    }
    body = review(cocoonset, None, operation="CREATE", kind="CocoonSet",
                  group="cocoonset.cocoonstack.io", resource="cocoonsets")  # fmt: skip
    checked = _admission(server.https("POST", "/validate-cocoonset", body))
    assert checked["allowed"] is False
    assert "spec.agent.image is required" in checked["status"]["message"]

    status, _, reply = server.https("POST", "/validate", None)
    assert status == 400
    assert reply.startswith(b"decode admission review: ")


def test_hibernation_path_lists_through_the_api(server: Server, cluster: EmulatorProcess) -> None:
    from kubernetes import client

    def check(obj: dict[str, Any]) -> dict[str, Any]:
        body = review(obj, None, operation="CREATE", kind="CocoonHibernation", namespace="default",
                      group="cocoonset.cocoonstack.io", resource="cocoonhibernations")  # fmt: skip
        return _admission(server.https("POST", "/validate-cocoonhibernation", body))

    assert check(hibernation("srv-0", "srv-0")) == {"uid": "uid-1", "allowed": True}
    client.CustomObjectsApi(cluster.api_client()).create_namespaced_custom_object(
        "cocoonset.cocoonstack.io", "v1", "default", "cocoonhibernations",
        hibernation("srv-legacy", "srv-0"),
    )  # fmt: skip
    denied = check(hibernation("srv-0", "srv-0"))
    assert denied["status"]["message"] == (
        'cocoon-webhook: pod "srv-0" already has a live CocoonHibernation "srv-legacy"; '
        "flip its spec.desire instead of creating a second CR"
    )


def test_serves_the_certificate_signed_by_the_ca(server: Server) -> None:
    assert server.serial() == server.pki.serial
    other = Pki.create(server.pki.directory.parent / "other-ca")
    context = ssl.create_default_context(cafile=str(other.ca_file))
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname="127.0.0.1")


@pytest.mark.parametrize(
    ("method", "path", "status", "text"),
    [
        pytest.param("GET", "/healthz", 200, "ok", id="healthz"),
        pytest.param("POST", "/healthz", 200, "ok", id="healthz-any-method"),
        pytest.param("GET", "/readyz", 200, "ready", id="readyz"),
        pytest.param("GET", "/metrics", 404, NOT_FOUND, id="no-metrics-on-tls"),
        pytest.param("GET", "/", 404, NOT_FOUND, id="root"),
        pytest.param("POST", "/", 404, NOT_FOUND, id="root-post"),
        pytest.param("POST", "/mutate/", 404, NOT_FOUND, id="trailing-slash"),
        pytest.param("POST", "/reap", 404, NOT_FOUND, id="reap"),
        pytest.param("GET", "/mutate", 405, "405 method not allowed", id="mutate-get"),
        pytest.param("PUT", "/validate", 405, "405 method not allowed", id="validate-put"),
        pytest.param("GET", "/validate-cocoonset", 405, "405 method not allowed", id="cs-get"),
        pytest.param(
            "GET", "/validate-cocoonhibernation", 405, "405 method not allowed", id="ch-get"
        ),
    ],
)
def test_tls_port_routes(server: Server, method: str, path: str, status: int, text: str) -> None:
    got, headers, body = server.https(method, path)
    assert (got, body.decode()) == (status, text)
    assert headers["content-type"] == "text/plain; charset=utf-8"
    if status == 405:
        assert headers["allow"] == "POST"


def test_metrics_port_serves_only_metrics(server: Server) -> None:
    server.https("POST", "/validate", review(workload(1), workload(3)))
    status, headers, body = server.http_metrics("GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert 'cocoon_webhook_admission_total{decision="deny",handler="validate"}' in text
    assert "cocoon_webhook_reaper_sweeps_total" in text
    for path in ("/", "/healthz", "/readyz", "/mutate", "/metrics/"):
        assert server.http_metrics("GET", path)[0::2] == (404, NOT_FOUND.encode())


def test_replies_do_not_wait_for_delayed_acks(server: Server) -> None:
    """Small replies leave at once (TCP_NODELAY): each would otherwise stall ~40 ms on Linux."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1", server.port, context=server.tls_context(), timeout=10
    )
    connection.request("GET", "/healthz")
    connection.getresponse().read()
    latencies = []
    for _ in range(20):
        started = time.monotonic()
        connection.request("GET", "/healthz")
        assert connection.getresponse().read() == b"ok"
        latencies.append(time.monotonic() - started)
    connection.close()
    # A delayed ACK is a floor under every reply that load cannot lower, while load only adds to
    # some: the fastest reply tells, not the sum.
    assert min(latencies) < 0.03, f"fastest of 20 keep-alive requests took {min(latencies):.3f}s"


def test_tls_port_does_not_speak_plain_http(server: Server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        _exchange(connection, "GET", "/healthz", None)


# --- TLS versions --------------------------------------------------------------------------------


def _tls11_client() -> ssl.SSLContext:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        # OpenSSL 3 allows TLS 1.1 only at security level 0.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def _tls11_possible(pki: Pki) -> bool:
    """Whether this OpenSSL can speak TLS 1.1 at all, against a server that allows it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.minimum_version = ssl.TLSVersion.TLSv1_1
        server.set_ciphers("DEFAULT:@SECLEVEL=0")
    server.load_cert_chain(pki.cert_file, pki.key_file)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept() -> None:
            connection, _ = listener.accept()
            with contextlib.suppress(OSError), server.wrap_socket(connection, server_side=True):
                pass

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                _tls11_client().wrap_socket(raw) as tls,
            ):
                return tls.version() == "TLSv1.1"
        except OSError:
            return False
        finally:
            thread.join(5)


def test_tls_12_and_13_accepted_and_11_refused(server: Server) -> None:
    for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        context = server.tls_context(minimum_version=version, maximum_version=version)
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.version() == name
    if not _tls11_possible(server.pki):
        pytest.skip("this OpenSSL build cannot offer TLS 1.1, so the refusal cannot be shown")
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        _tls11_client().wrap_socket(raw)


# --- readiness -----------------------------------------------------------------------------------


def test_listens_at_once_and_stays_ready_without_the_api(tmp_path: Path, pki: Pki) -> None:
    """A dead API server is logged and shown in metrics. The server stays out of rotation
    until mutate's caches first synced (issue 10), but validate answers what needs no API."""
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        dead = spare.getsockname()[1]  # nothing listens there once closed
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{dead}"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }))  # fmt: skip
    with running(server_env(str(kubeconfig), pki), pki) as down:
        assert down.https("GET", "/healthz")[0::2] == (200, b"ok")
        assert down.https("GET", "/readyz")[0::2] == (
            503,
            b"not ready: caches not synced yet (pods, nodes, configmaps)",
        )
        logged = down.process.wait_for_log(lambda e: e["msg"] == "kubernetes API unreachable", 30)
        assert logged["level"] == "warn"
        assert logged["error"].startswith("get version: ")
        metrics = down.http_metrics("GET", "/metrics")[2].decode()
        assert "cocoon_webhook_kube_api_reachable 0.0" in metrics
        # validate still answers what needs no API: a scale-up, and a scale-down it must deny.
        up = _admission(
            down.https(
                "POST", "/validate", review(scale(3), scale(1), kind="Scale", sub_resource="scale")
            )
        )
        assert up["allowed"] is True
        shrink = review(scale(1), scale(3), kind="Scale", sub_resource="scale")
        denied = _admission(down.https("POST", "/validate", shrink))
        assert denied["allowed"] is False
        assert "cannot verify parent workload" in denied["status"]["message"]


# --- certificate reload --------------------------------------------------------------------------


def test_new_certificate_served_on_the_next_connection(cluster: EmulatorProcess, pki: Pki) -> None:
    with running(server_env(cluster.kubeconfig, pki), pki) as live:
        first = pki.serial
        assert live.serial() == first
        kept = http.client.HTTPSConnection(
            "127.0.0.1", live.port, context=live.tls_context(), timeout=10
        )
        kept.request("GET", "/healthz")
        assert kept.getresponse().read() == b"ok"

        second = pki.issue()
        assert second != first
        assert live.serial() == second
        kept.request("GET", "/healthz")  # an established connection keeps its session
        assert kept.getresponse().read() == b"ok"
        kept.close()
        # The log is read from the server's pipe by a thread: wait for the line, then count.
        live.process.wait_for_log(lambda e: e["msg"] == "TLS pair reloaded", timeout=30)
        reloads = [e for e in live.process.logs if e["msg"] == "TLS pair reloaded"]
        assert len(reloads) == 1


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param("garbage-cert", id="garbage-cert"),
        pytest.param("empty-key", id="empty-key"),
        pytest.param("mismatched-key", id="mismatched-key"),
        pytest.param("missing-cert", id="missing-cert"),
    ],
)
def test_broken_replacement_keeps_the_old_certificate(
    cluster: EmulatorProcess, pki: Pki, breakage: str
) -> None:
    with running(server_env(cluster.kubeconfig, pki), pki) as live:
        good = pki.serial
        if breakage == "garbage-cert":
            pki.cert_file.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n")
        elif breakage == "empty-key":
            pki.key_file.write_bytes(b"")
        elif breakage == "mismatched-key":
            cert, _, _ = pki.leaf()
            pki.cert_file.write_bytes(cert)
        else:
            pki.cert_file.unlink()
        for _ in range(3):
            assert live.serial() == good
        errors = [e for e in live.process.logs if e["msg"].startswith("TLS pair not reloaded")]
        assert len(errors) == 1, "logged once per change, not per handshake"
        assert errors[0]["level"] == "error"
        assert "TLS_" in errors[0]["error"]

        fixed = pki.issue()
        assert live.serial() == fixed


# --- shutdown ------------------------------------------------------------------------------------


def test_sigterm_lets_in_flight_reviews_finish_then_exits_zero(
    cluster: EmulatorProcess, pki: Pki
) -> None:
    cluster.reset()
    env = server_env(cluster.kubeconfig, pki, MUTATE_DEADLINE="4500ms")
    with running(env, pki) as live:
        deadline = time.monotonic() + 20
        while live.https("GET", "/readyz")[0] != 200:  # reads come from the caches from here
            assert time.monotonic() < deadline, "the server's caches never synced"
            time.sleep(0.05)
        # The first write (creating the pool's ConfigMap) takes 1.5 s and the other reviews
        # queue behind it, so all are in flight when SIGTERM lands.
        cluster.fault("POST", AFFINITY_CONFIGMAP.rsplit("/", 1)[0], delay=1.5)
        replies: list[tuple[int, dict[str, str], bytes]] = []

        sent = threading.Semaphore(0)

        def call(index: int) -> None:
            connection = http.client.HTTPSConnection(
                "127.0.0.1", live.port, context=live.tls_context(), timeout=20
            )
            try:
                body = json.dumps(pod_review(f"uid-{index}")).encode()
                connection.request(
                    "POST", "/mutate", body=body, headers={"Content-Type": "application/json"}
                )
                sent.release()
                response = connection.getresponse()
                replies.append((response.status, dict(response.getheaders()), response.read()))
            finally:
                connection.close()

        # An idle keep-alive connection, as the API server keeps: it must not hold up the exit.
        idle = http.client.HTTPSConnection(
            "127.0.0.1", live.port, context=live.tls_context(), timeout=10
        )
        idle.request("GET", "/healthz")
        assert idle.getresponse().read() == b"ok"
        callers = [threading.Thread(target=call, args=(i,)) for i in range(4)]
        for caller in callers:
            caller.start()
        # Every review sent, and the first (delayed) affinity read under way: the reviews are past
        # the listener, batched behind that read.
        for _ in callers:
            assert sent.acquire(timeout=20)
        assert wait_until(lambda: [fault["times"] for fault in cluster.pending_faults()] != [4]), (
            "the reviews never reached the API"
        )
        signalled = time.monotonic()
        live.process.process.send_signal(signal.SIGTERM)
        stopping = live.process.wait_for_log(lambda e: e["msg"] == "stopping", 5)
        assert stopping["inFlight"] == 4

        # The listeners close within uvicorn's 0.1 s tick, long before the reviews end.
        for port in (live.port, live.metrics_port):
            assert wait_until(lambda port=port: _refuses(port), 2), f"port {port} still open"

        code = live.process.process.wait(SHUTDOWN_GRACE_S + 5)
        elapsed = time.monotonic() - signalled
        for caller in callers:
            caller.join(5)

        idle.close()

    assert code == 0
    # The reviews needed a few seconds more after the signal; nothing waited for the idle
    # connection (it would have held the exit until the 15 s grace).
    assert elapsed < SHUTDOWN_GRACE_S - 3, elapsed
    assert len(replies) == 4
    vm_names = set()
    for reply in replies:
        response = _admission(reply)
        assert response["allowed"] is True
        assert "warnings" not in response, response  # reserved, not failed open
        ops = {op["path"]: op["value"] for op in patch_of(response)}
        vm_names.add(ops["/metadata/annotations/vm.cocoonstack.io~1name"])
    assert len(vm_names) == 4


def test_reviews_sent_through_a_sigterm_are_all_answered(
    cluster: EmulatorProcess, pki: Pki
) -> None:
    """SIGTERM arrives while the pod's endpoints are still being removed: for SHUTDOWN_DELAY the
    server keeps accepting and answering on new connections (readiness already 503), then closes.
    """
    # Reviews go out for the first 2 s of a 10 s delay: the margin is for a loaded machine, where
    # one round trip can take seconds.
    env = server_env(cluster.kubeconfig, pki, SHUTDOWN_DELAY="10s")
    deny = review(workload(1, cocoon=True), workload(3, cocoon=True))
    allow = review(workload(3), workload(1))
    with running(env, pki) as live:
        assert live.https("GET", "/readyz")[0::2] == (200, b"ready")
        signalled = time.monotonic()
        live.process.process.send_signal(signal.SIGTERM)
        stopping = live.process.wait_for_log(lambda e: e["msg"] == "stopping", 5)
        ready = live.https("GET", "/readyz")
        answered = []
        for index in itertools.count():
            if index >= 2 and time.monotonic() - signalled >= 2.0:
                break
            body = deny if index % 2 else allow
            answered.append((index, _admission(live.https("POST", "/validate", body))))
        closing = live.process.wait_for_log(lambda e: e["msg"] == "closing listeners", 30)
        code = live.process.process.wait(SHUTDOWN_GRACE_S + 5)
    assert code == 0
    assert stopping["closeIn"] == "10s"
    assert ready[0::2] == (503, b"not ready: shutting down")
    assert closing["inFlight"] == 0
    assert len(answered) >= 2, "no review was sent during the delay"
    for index, response in answered:
        assert response["allowed"] is (index % 2 == 0), (index, response)


def test_grace_period_ends_a_request_that_never_completes(
    cluster: EmulatorProcess, pki: Pki
) -> None:
    """A client that never sends its body keeps a request open; exit 0 at 15 s regardless."""
    # The body deadline would end the request first (test_server_bounds.py).
    env = server_env(cluster.kubeconfig, pki, REQUEST_BODY_TIMEOUT="60s")
    with running(env, pki) as live:
        raw = socket.create_connection(("127.0.0.1", live.port), timeout=30)
        stuck = live.tls_context().wrap_socket(raw, server_hostname="127.0.0.1")
        stuck.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.3)
        signalled = time.monotonic()
        live.process.process.send_signal(signal.SIGTERM)
        code = live.process.process.wait(SHUTDOWN_GRACE_S + 5)
        elapsed = time.monotonic() - signalled
        stuck.close()
    assert code == 0
    # The lower bound is the behaviour; the upper one only leaves room for a loaded machine.
    assert SHUTDOWN_GRACE_S - 0.5 < elapsed < SHUTDOWN_GRACE_S + 10


# --- startup failures ----------------------------------------------------------------------------


def _start_fails(env: dict[str, str]) -> dict[str, Any]:
    """Run a server expected to refuse to start; its one log line."""
    process = ServerProcess.start(env)
    with pytest.raises(ServerExited) as exited:
        process.wait_listening()
    assert exited.value.code == 1
    assert len(exited.value.output) == 1, exited.value.output
    line = exited.value.logs[0]
    assert line["level"] == "fatal"
    # The same time format as every other line (a bad setting's line once had its own).
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]), line["time"]
    return line


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        pytest.param("missing-cert", "read TLS_CERT {cert}: No such file or directory",
                     id="missing-cert"),
        pytest.param("missing-key", "read TLS_KEY {key}: No such file or directory",
                     id="missing-key"),
        pytest.param("garbage-cert", "TLS_CERT {cert}: no PEM certificate found",
                     id="garbage-cert"),
        pytest.param("cert-as-key", "TLS_KEY {key}: no PEM private key found", id="cert-as-key"),
        pytest.param("mismatched-key", "load TLS_CERT {cert} with TLS_KEY {key}: ",
                     id="mismatched-key"),
    ],
)  # fmt: skip
def test_bad_tls_files_stop_the_start(
    cluster: EmulatorProcess, pki: Pki, breakage: str, message: str
) -> None:
    if breakage == "missing-cert":
        pki.cert_file.unlink()
    elif breakage == "missing-key":
        pki.key_file.unlink()
    elif breakage == "garbage-cert":
        pki.cert_file.write_text("hello")
    elif breakage == "cert-as-key":
        pki.key_file.write_bytes(pki.cert_file.read_bytes())
    else:
        pki.cert_file.write_bytes(pki.leaf()[0])
    line = _start_fails(server_env(cluster.kubeconfig, pki))
    assert line["msg"].startswith(message.format(cert=pki.cert_file, key=pki.key_file))


def test_bad_kubeconfig_stops_the_start(pki: Pki, tmp_path: Path) -> None:
    line = _start_fails(server_env(str(tmp_path / "nope"), pki))
    assert line["msg"].startswith("load kubeconfig: ")


def test_bad_setting_stops_the_start(cluster: EmulatorProcess, pki: Pki) -> None:
    line = _start_fails(server_env(cluster.kubeconfig, pki, REAPER_INTERVAL="300"))
    assert line["msg"] == ('invalid REAPER_INTERVAL "300": missing unit (use e.g. 90s, 5m, 1h30m)')


@pytest.mark.parametrize("variable", ["LISTEN_ADDR", "METRICS_ADDR"])
def test_port_taken_stops_the_start(cluster: EmulatorProcess, pki: Pki, variable: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        line = _start_fails(server_env(cluster.kubeconfig, pki, **{variable: f"127.0.0.1:{port}"}))
    assert line["msg"] == f"listen on {variable} 127.0.0.1:{port}: Address already in use"


# --- entry points --------------------------------------------------------------------------------


def test_console_script_with_serve_subcommand(cluster: EmulatorProcess, pki: Pki) -> None:
    script = Path(sys.executable).parent / "cocoon-webhook"
    env = server_env(cluster.kubeconfig, pki)
    process = subprocess.Popen(
        [str(script), "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    server = ServerProcess.watch(process)
    Server(server, pki)
    assert server.stop() == 0
    wrong = subprocess.run(
        [str(script), "reap"], check=False, capture_output=True, text=True, timeout=30
    )
    assert wrong.returncode == 2
    assert "invalid choice: 'reap'" in wrong.stderr


# --- the reaper loop, in-process -----------------------------------------------------------------


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_reaper_loop_sweeps_at_start() -> None:
    """The first sweep runs at once, not an interval later (an hour here)."""
    started = threading.Event()
    loop = ReaperLoop(lambda now: started.set(), 3600)
    loop.start()
    try:
        assert started.wait(20), "no sweep at start"
    finally:
        loop.stop()
    # The stop wakes the wait for the next tick instead of sleeping out the hour.
    assert loop.join(20)


def test_reaper_loop_never_overlaps_and_skips_the_ticks_a_long_sweep_covers() -> None:
    interval = 0.3
    starts: list[float] = []
    overlaps: list[int] = []
    active = threading.Lock()

    def sweep(now: datetime) -> None:
        # Recorded, not asserted: the loop catches whatever a sweep raises.
        if not active.acquire(blocking=False):
            overlaps.append(len(starts))
            return
        starts.append(time.monotonic())
        # The second sweep outlasts three intervals: the ticks it covers are skipped, not queued.
        time.sleep(1.0 if len(starts) == 2 else 0)
        active.release()

    loop = ReaperLoop(sweep, interval)
    loop.start()
    try:
        assert wait_until(lambda: len(starts) >= 5), starts
    finally:
        loop.stop()
    assert loop.join(20)
    assert overlaps == []
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # Never more often than the interval, however late a tick runs: a queued tick would start at
    # once after the long sweep, and so would the ones behind it. (Lower bounds only: a loaded
    # machine makes ticks late, never early.)
    assert all(gap >= interval - 0.05 for gap in gaps), gaps


def test_reaper_loop_survives_a_failing_sweep() -> None:
    calls: list[datetime] = []

    def sweep(now: datetime) -> None:
        calls.append(now)
        raise RuntimeError("boom")

    loop = ReaperLoop(sweep, 0.05)
    loop.start()
    try:
        assert wait_until(lambda: len(calls) >= 3), calls
    finally:
        loop.stop()
    assert loop.join(20)
    assert all(now.tzinfo is not None for now in calls)
