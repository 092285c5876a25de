"""Bounds on every connection of the standalone server, tried with raw (TLS) sockets.

Each server here runs with bounds of a second, so a test waits for the server to close a
connection (with a generous timeout) rather than for a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from common import offload
from common.config import Settings
from common.connections import KEEPALIVE_RELEASE, ByteBudget, Guard, Limits
from common.strict_json import MAX_DEPTH
from tests.helpers import review, workload
from tests.helpers.server import Pki, ServerProcess, server_env
from tests.kube_emulator.launcher import EmulatorProcess
from tests.pki import issue, make_ca
from tests.test_hostile_bodies import bodies as hostile_bodies

ADMISSION_PATHS = ("/mutate", "/validate", "/validate-cocoonset", "/validate-cocoonhibernation")
CLOSE_WAIT_S = 30.0  # far above any bound below: only a server that never closes fails
SHORT = {"REQUEST_HEAD_TIMEOUT": "1s", "REQUEST_BODY_TIMEOUT": "1s", "IDLE_TIMEOUT": "1s"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    handle = EmulatorProcess.start(
        tmp_path_factory.mktemp("bounds-emulator"), seed="sandbox", name="bounds"
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("bounds-pki"))


@contextlib.contextmanager
def serving(cluster: EmulatorProcess, pki: Pki, **env: str) -> Iterator[tuple[int, int]]:
    process = ServerProcess.start(server_env(cluster.kubeconfig, pki, **env))
    try:
        yield process.wait_listening()
    finally:
        assert process.stop() == 0, process.output[-10:]


@pytest.fixture(scope="module")
def short(cluster: EmulatorProcess, pki: Pki) -> Iterator[tuple[int, int]]:
    with serving(cluster, pki, **SHORT) as ports:
        yield ports


def tls(pki: Pki, port: int, cert: tuple[Path, Path] | None = None) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    if cert is not None:
        context.load_cert_chain(*cert)
    raw = socket.create_connection(("127.0.0.1", port), timeout=CLOSE_WAIT_S)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def closed_by_server(sock: socket.socket) -> bool:
    """Read until the server closes (True) or CLOSE_WAIT_S passes with the socket open."""
    sock.settimeout(CLOSE_WAIT_S)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        pass
    return True


def request(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def read_reply(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )  # fmt: skip
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ")[1]), body


def closed_total(metrics_port: int, bound: str) -> float:
    with socket.create_connection(("127.0.0.1", metrics_port), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        text = b""
        while chunk := sock.recv(65536):
            text += chunk
    prefix = f'cocoon_webhook_connections_closed_total{{bound="{bound}"}} '.encode()
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


VALID = json.dumps(review(workload(5), workload(3))).encode()


def test_tls_handshake_never_started_is_closed(short: tuple[int, int]) -> None:
    with socket.create_connection(("127.0.0.1", short[0]), timeout=CLOSE_WAIT_S) as raw:
        assert closed_by_server(raw)


def test_connection_without_a_request_is_closed(pki: Pki, short: tuple[int, int]) -> None:
    before = closed_total(short[1], "head")
    with tls(pki, short[0]) as sock:
        assert closed_by_server(sock)
    assert closed_total(short[1], "head") == before + 1


def test_trickled_request_head_is_closed(pki: Pki, short: tuple[int, int]) -> None:
    with tls(pki, short[0]) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /validate HTTP/1.1\r\n")
        sock.settimeout(0.2)
        # One header byte every 0.2 s: each keeps the connection busy, none completes the head.
        with contextlib.suppress(OSError):
            while time.monotonic() - started < CLOSE_WAIT_S:
                sock.sendall(b"X")
                with contextlib.suppress(TimeoutError):
                    if sock.recv(1) == b"":
                        break
        assert closed_by_server(sock)
        assert time.monotonic() - started < CLOSE_WAIT_S


def test_stalled_body_is_closed(pki: Pki, short: tuple[int, int]) -> None:
    before = closed_total(short[1], "body")
    with tls(pki, short[0]) as sock:
        sock.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        assert closed_by_server(sock)
    assert closed_total(short[1], "body") == before + 1


def test_idle_keep_alive_is_closed_after_answering(pki: Pki, short: tuple[int, int]) -> None:
    before = closed_total(short[1], "idle")
    with tls(pki, short[0]) as sock:
        for _ in range(3):  # the connection is reused while requests keep coming
            sock.sendall(request("/validate", VALID))
            status, body = read_reply(sock)
            assert status == 200, body
        assert closed_by_server(sock)
    assert closed_total(short[1], "idle") == before + 1


def test_metrics_listener_is_bounded_too(short: tuple[int, int]) -> None:
    with socket.create_connection(("127.0.0.1", short[1]), timeout=CLOSE_WAIT_S) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        assert closed_by_server(sock)


def test_too_deep_review_is_400(pki: Pki, short: tuple[int, int]) -> None:
    body = b'{"request":' + b"[" * (MAX_DEPTH + 10) + b"]" * (MAX_DEPTH + 10) + b"}"
    for path in ADMISSION_PATHS:
        with tls(pki, short[0]) as sock:
            sock.sendall(request(path, body))
            status, reply = read_reply(sock)
            assert (status, reply) == (400, b"decode admission review: "
                                             b"JSON nested deeper than 256 levels")  # fmt: skip


def test_lone_surrogate_in_a_reply_is_not_a_500(pki: Pki, short: tuple[int, int]) -> None:
    # Echoed in the 400 reason, it could not be encoded: 500 and a traceback in the log.
    body = b'{"apiVersion":"v1\\ud800","kind":"AdmissionReview"}'
    for path in ADMISSION_PATHS:
        with tls(pki, short[0]) as sock:
            sock.sendall(request(path, body))
            status, reply = read_reply(sock)
        assert (status, reply.decode()) == (
            400, 'unsupported admission review "v1\ufffd" "AdmissionReview": '
                 "want admission.k8s.io/v1 AdmissionReview"
        )  # fmt: skip


def test_connections_over_the_cap_are_refused(cluster: EmulatorProcess, pki: Pki) -> None:
    with serving(cluster, pki, MAX_CONNECTIONS="3") as (port, metrics_port):
        held = [tls(pki, port) for _ in range(3)]
        try:
            for sock in held:  # each really is served
                sock.sendall(request("/validate", VALID))
                assert read_reply(sock)[0] == 200
            extra = tls(pki, port)
            assert closed_by_server(extra)
            extra.close()
            held.pop().close()
            # Room again once one has gone (the server notices the close asynchronously).
            deadline = time.monotonic() + CLOSE_WAIT_S
            while True:
                sock = tls(pki, port)
                try:
                    sock.sendall(request("/validate", VALID))
                    assert read_reply(sock)[0] == 200
                    break
                except (AssertionError, OSError):
                    assert time.monotonic() < deadline
                finally:
                    sock.close()
        finally:
            for sock in held:
                sock.close()
        assert closed_total(metrics_port, "capacity") >= 1


# --- the body budget -----------------------------------------------------------------------------


def test_small_body_goes_ahead_of_large_ones_waiting_for_room() -> None:
    async def scenario() -> list[str]:
        budget = ByteBudget(100)
        order: list[str] = []
        release_big = asyncio.Event()

        async def take(name: str, size: int, hold: asyncio.Event | None = None) -> None:
            async with budget.hold(size):
                order.append(name)
                if hold is not None:
                    await hold.wait()

        first = asyncio.create_task(take("big-1", 80, release_big))
        await asyncio.sleep(0)
        second = asyncio.create_task(take("big-2", 80))
        small = asyncio.create_task(take("small", 10))
        await asyncio.wait_for(small, 10)  # fits beside big-1, so it does not wait for it
        assert not second.done()
        assert budget.free == 20
        release_big.set()
        await asyncio.wait_for(asyncio.gather(first, second), 10)
        assert budget.free == 100
        return order

    assert asyncio.run(scenario()) == ["big-1", "small", "big-2"]


def test_oversized_hold_is_clamped_to_the_capacity() -> None:
    async def scenario() -> int:
        budget = ByteBudget(100)
        async with budget.hold(10**9):
            return budget.free

    assert asyncio.run(scenario()) == 0


# --- client certificates (CLIENT_CA) -------------------------------------------------------------


@pytest.fixture(scope="module")
def client_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path] | Path]:
    """The API server's client CA and a certificate it signed, plus one from a stranger CA."""
    directory = tmp_path_factory.mktemp("client-pki")
    ca, stranger = make_ca("kube-apiserver webhook clients"), make_ca("someone else")
    (directory / "client-ca.crt").write_bytes(ca.cert_pem)
    signed = issue(ca, "kube-apiserver", client=True).write(directory, "apiserver")
    forged = issue(stranger, "kube-apiserver", client=True).write(directory, "x")
    return {
        "ca": directory / "client-ca.crt",
        "signed": (Path(signed[0]), Path(signed[1])),
        "forged": (Path(forged[0]), Path(forged[1])),
    }


@pytest.fixture(scope="module")
def mutual(cluster: EmulatorProcess, pki: Pki, client_pki: dict[str, Any]) -> Iterator[int]:
    with serving(cluster, pki, CLIENT_CA=str(client_pki["ca"])) as (port, _):
        yield port


def https_post(pki: Pki, port: int, cert: tuple[Path, Path] | None, path: str) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    if cert is not None:
        context.load_cert_chain(*cert)
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        connection.request("POST", path, body=VALID, headers={"Content-Type": "application/json"})
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


def test_client_signed_by_client_ca_is_served(
    pki: Pki, mutual: int, client_pki: dict[str, Any]
) -> None:
    for path in ("/validate", "/mutate", "/validate-cocoonset"):
        status, body = https_post(pki, mutual, client_pki["signed"], path)
        assert status == 200, body
        assert json.loads(body)["kind"] == "AdmissionReview"


def test_client_without_certificate_is_refused_but_probes_answer(pki: Pki, mutual: int) -> None:
    for path in ("/validate", "/mutate", "/validate-cocoonset"):
        assert https_post(pki, mutual, None, path) == (
            403, b"client certificate required (CLIENT_CA is set)"
        )  # fmt: skip
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    connection = http.client.HTTPSConnection("127.0.0.1", mutual, context=context, timeout=30)
    connection.request("GET", "/healthz")
    assert connection.getresponse().read() == b"ok"
    connection.close()


def test_client_certificate_from_another_ca_fails_the_handshake(
    pki: Pki, mutual: int, client_pki: dict[str, Any]
) -> None:
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        https_post(pki, mutual, client_pki["forged"], "/validate")


def test_without_client_ca_no_certificate_is_needed(pki: Pki, short: tuple[int, int]) -> None:
    status, body = https_post(pki, short[0], None, "/validate")
    assert status == 200, body


def test_bad_client_ca_stops_the_start(cluster: EmulatorProcess, pki: Pki, tmp_path: Path) -> None:
    bogus = tmp_path / "ca.crt"
    bogus.write_text("not a certificate")
    process = ServerProcess.start(server_env(cluster.kubeconfig, pki, CLIENT_CA=str(bogus)))
    assert process.process.wait(60) == 1
    lines = [entry["msg"] for entry in process.logs if entry.get("level") == "fatal"]
    assert lines == [f"CLIENT_CA {bogus}: no PEM certificate found"]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=hostile_bodies, path=st.sampled_from(ADMISSION_PATHS))
def test_fuzzed_reviews_get_an_answer_from_the_server(
    pki: Pki, short: tuple[int, int], body: bytes, path: str
) -> None:
    with tls(pki, short[0]) as sock:
        sock.sendall(request(path, body))
        status, reply = read_reply(sock)
    assert status in (200, 400, 413), (status, reply[:300])
    if status != 200:
        assert reply and b"\n" not in reply and b"Traceback" not in reply
    else:
        assert json.loads(reply)["kind"] == "AdmissionReview"


# --- large bodies ----------------------------------------------------------------------------


def descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command name may hold spaces and parentheses; the fields after it do not.
            fields = stat.read_text().rpartition(")")[2].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["drained", "killed"])
def test_large_review_is_decoded_by_workers_that_stop_with_the_server(
    cluster: EmulatorProcess, pki: Pki, signum: signal.Signals
) -> None:
    # Killed: nothing of the server runs, so only the workers' own setup (they die with the
    # fork server, which exits when the server's end of its pipe closes) can stop them.
    obj = workload(1)
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": f"env-{i}", "value": "x" * 40} for i in range(20_000)
    ]
    body = json.dumps(review(obj, workload(3))).encode()
    assert len(body) > offload.OFFLOAD_BODY_BYTES
    process = ServerProcess.start(server_env(cluster.kubeconfig, pki))
    workers: set[int] = set()
    try:
        port, _ = process.wait_listening()
        with tls(pki, port) as sock:
            sock.sendall(request("/validate", body))
            status, reply = read_reply(sock)
        assert status == 200
        assert "scale-down" in json.loads(reply)["response"]["status"]["message"]
        workers = descendants(process.process.pid)
        assert workers, "no decoding process was started"
        if signum == signal.SIGKILL:
            process.process.kill()
            process.process.wait()
    finally:
        assert process.stop() in (0, -signal.SIGKILL), process.output[-10:]
    if signum == signal.SIGTERM:
        assert process.process.returncode == 0
    deadline = time.monotonic() + CLOSE_WAIT_S
    while any(map(running, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(running, workers)), "decoding processes outlived the server"


class _KeepAliveProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.lost: list[Exception | None] = []
        self.released = 0

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)

    def _unset_keepalive_if_required(self) -> None:
        self.released += 1


@pytest.mark.parametrize("error", [ConnectionResetError("reset"), ssl.SSLEOFError("eof")])
def test_a_connection_lost_with_an_error_releases_uvicorns_keep_alive_timer(
    error: Exception,
) -> None:
    """Otherwise the timer keeps the connection's protocol alive until IDLE_TIMEOUT."""
    inner = _KeepAliveProtocol()
    guard = Guard(inner, Limits.of(Settings.from_env({})))
    guard.connection_lost(error)
    assert (inner.lost, inner.released) == ([error], 1)


def test_uvicorns_protocols_still_have_the_keep_alive_release() -> None:
    for protocol in (HttpToolsProtocol, H11Protocol):
        assert callable(getattr(protocol, KEEPALIVE_RELEASE, None)), protocol
