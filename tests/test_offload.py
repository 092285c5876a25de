"""Large bodies are decoded off the event loop: a small review is answered meanwhile.

Each test goes through the real pool of worker processes; what a worker runs is swapped for a
module-level function (pickled by reference) when a test needs it to wait, crash or raise.
Waits are on files the worker and the test create, never on durations.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from common import offload
from common.admission import Endpoint, serve
from common.models import AdmissionRequest, EnvelopeError, Review, parse_review
from common.server import AdmissionApp
from common.strict_json import MAX_DEPTH
from common.verdict import Decision, Verdict, deny
from tests.helpers import response_of, review, workload
from tests.test_server_bounds import running

WAIT_S = 60.0  # only a server that never answers reaches it


def large_review(replicas: int, **request: Any) -> bytes:
    obj = workload(replicas)
    filler = [{"name": f"env-{i}", "value": "x" * 40} for i in range(20_000)]
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = filler
    document = review(obj, workload(3))
    document["request"].update(request)
    body = json.dumps(document).encode()
    assert len(body) > offload.OFFLOAD_BODY_BYTES
    return body


SMALL = json.dumps(review(workload(5), workload(3))).encode()


class Recording:
    """An endpoint that denies with the decoded replicas, so each answer shows what was read."""

    def __init__(self) -> None:
        self.seen: list[AdmissionRequest] = []

    async def decide(self, admitted: Review) -> Verdict:
        self.seen.append(admitted.request)
        replicas = admitted.request.object["spec"]["replicas"]
        return deny(f"replicas {replicas}", Decision.DENY)

    def endpoint(self) -> Endpoint:
        async def ready() -> tuple[bool, str]:
            return True, "ready"

        return Endpoint(
            handler="validate",
            paths=frozenset({"/validate"}),
            decide=self.decide,
            readiness=ready,
            on_unexpected=lambda exc: deny(str(exc), Decision.ERROR),
        )


@pytest.fixture
def recording() -> Recording:
    return Recording()


@pytest.fixture
def client(recording: Recording) -> Iterator[TestClient]:
    endpoint = recording.endpoint()

    async def handle(request: Request) -> Response:
        return await serve(request, endpoint)

    app = Starlette(routes=[Route("/{path:path}", handle, methods=["POST"])])
    try:
        # raise_server_exceptions=False: a bug must show as the 500 a caller would get.
        with TestClient(app, raise_server_exceptions=False) as test_client:
            yield test_client
    finally:
        offload.shutdown()


def fallbacks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the large bodies parsed on the event loop instead of in a worker."""
    inline: list[int] = []

    def parse_here(body: bytes) -> AdmissionRequest:
        if len(body) > offload.OFFLOAD_BODY_BYTES:
            inline.append(len(body))
        return parse_review(body)

    monkeypatch.setattr(offload, "parse_review", parse_here)
    return inline


@pytest.fixture
def inline(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return fallbacks(monkeypatch)


def message(reply: Any) -> str:
    return str(response_of(reply)["status"]["message"])


def wait_for(path: Path) -> bool:
    # A worker process cannot share a threading.Event; a file is the event here.
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def held(directory: Path, body: bytes) -> AdmissionRequest:
    """In the worker: say the decode started, wait for the test's release, then decode."""
    (directory / "decoding").touch()
    wait_for(directory / "release")
    return parse_review(body)


def killed(body: bytes) -> AdmissionRequest:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def failing(body: bytes) -> AdmissionRequest:
    raise MemoryError  # what a worker may meet that the event loop would not


def in_background(call: Callable[[], Any]) -> tuple[Future[Any], threading.Thread]:
    done: Future[Any] = Future()

    def run() -> None:
        try:
            done.set_result(call())
        except BaseException as exc:
            done.set_exception(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return done, thread


def test_small_review_answered_while_a_worker_decodes_a_large_one(
    monkeypatch: pytest.MonkeyPatch, client: TestClient, tmp_path: Path, inline: list[int]
) -> None:
    # The TestClient serves both requests on one event loop: the small one can only be answered
    # first if the loop is free while the large body is in the worker.
    monkeypatch.setattr(offload, "decode_in_worker", functools.partial(held, tmp_path))
    large, poster = in_background(lambda: client.post("/validate", content=large_review(7)))
    try:
        assert wait_for(tmp_path / "decoding"), "the large body never reached a worker"
        assert message(client.post("/validate", content=SMALL)) == "replicas 5"
        assert not large.done()
    finally:
        (tmp_path / "release").touch()
        poster.join(WAIT_S)
    assert message(large.result(WAIT_S)) == "replicas 7"
    assert isinstance(offload._pool, ProcessPoolExecutor)
    assert inline == []


def test_a_body_past_the_workers_bound_is_parsed_inline(
    monkeypatch: pytest.MonkeyPatch, client: TestClient, inline: list[int]
) -> None:
    body = large_review(4)
    monkeypatch.setattr(offload, "OFFLOAD_MAX_BYTES", len(body) - 1)
    assert message(client.post("/validate", content=body)) == "replicas 4"
    assert inline == [len(body)]
    assert offload._pool is None


class SlowToStart(ThreadPoolExecutor):
    """A pool whose first submit waits, as one does while it forks the first worker."""

    def __init__(self) -> None:
        super().__init__(1)
        self.starting, self.started = threading.Event(), threading.Event()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.starting.set()
        assert self.started.wait(WAIT_S)
        return super().submit(fn, *args, **kwargs)


def test_small_review_answered_while_the_worker_starts(
    monkeypatch: pytest.MonkeyPatch, client: TestClient, inline: list[int]
) -> None:
    pool = SlowToStart()
    monkeypatch.setattr(offload, "_start_pool", lambda: pool)
    large, poster = in_background(lambda: client.post("/validate", content=large_review(7)))
    try:
        assert pool.starting.wait(WAIT_S), "the large body never reached the pool"
        assert message(client.post("/validate", content=SMALL)) == "replicas 5"
        assert not large.done()
    finally:
        pool.started.set()
        poster.join(WAIT_S)
    assert message(large.result(WAIT_S)) == "replicas 7"
    assert inline == []


def test_a_worker_process_decodes_large_reviews_like_the_inline_path(
    client: TestClient, recording: Recording, inline: list[int]
) -> None:
    body = large_review(4)
    assert message(client.post("/validate", content=body)) == "replicas 4"
    assert isinstance(offload._pool, ProcessPoolExecutor)
    assert recording.seen == [parse_review(body)]
    assert inline == []


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def malformed() -> dict[str, bytes]:
    body = large_review(4)
    document = json.loads(body)
    return {
        "trailing data": body + b" x",
        "invalid UTF-8": body + b"\xff",
        "truncated": body[:-1],
        "too deep": body[:-1] + b', "deep": ' + nested(MAX_DEPTH + 1) + b"}",
        # Past Python's recursion limit: refused before the parser or pickle could recurse.
        "far too deep": body[:-1] + b', "deep": ' + nested(500_000) + b"}",
        "NaN": body.replace(b'"replicas": 4', b'"replicas": NaN', 1),
        "not an object": json.dumps([document]).encode(),
        "wrong kind": body.replace(b'"kind": "AdmissionReview"', b'"kind": "Review"', 1),
        "uid a number": large_review(4, uid=7),
        "uid empty": large_review(4, uid=""),
        "dryRun a string": large_review(4, dryRun="yes"),
        "kind a list": large_review(4, kind=[]),
    }


MALFORMED = malformed()


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_large_body_gets_the_inline_400_line(
    client: TestClient, inline: list[int], case: str
) -> None:
    body = MALFORMED[case]
    assert len(body) > offload.OFFLOAD_BODY_BYTES
    with pytest.raises(EnvelopeError) as expected:
        parse_review(body)
    reply = client.post("/validate", content=body)
    assert (reply.status_code, reply.text) == (400, str(expected.value))
    assert "\n" not in reply.text
    assert isinstance(offload._pool, ProcessPoolExecutor)
    assert inline == [], "decoded on the event loop, not by the worker"


@pytest.mark.parametrize("decoder", [killed, failing], ids=["killed", "raising"])
def test_a_worker_failing_while_decoding_falls_back_to_parsing_inline(
    monkeypatch: pytest.MonkeyPatch,
    client: TestClient,
    inline: list[int],
    decoder: Callable[[bytes], AdmissionRequest],
) -> None:
    monkeypatch.setattr(offload, "decode_in_worker", decoder)
    body = large_review(4)
    assert message(client.post("/validate", content=body)) == "replicas 4"
    assert inline == [len(body)]
    # The pool is dropped; the next large body starts a fresh one.
    monkeypatch.setattr(offload, "decode_in_worker", parse_review)
    assert message(client.post("/validate", content=large_review(6))) == "replicas 6"
    assert inline == [len(body)]


def test_idle_workers_killed_between_reviews_are_replaced(
    client: TestClient, inline: list[int]
) -> None:
    assert message(client.post("/validate", content=large_review(4))) == "replicas 4"
    pool = offload._pool
    assert isinstance(pool, ProcessPoolExecutor)
    for pid in list(pool._processes):  # no public way to reach the workers
        os.kill(pid, signal.SIGKILL)
    assert message(client.post("/validate", content=large_review(6))) == "replicas 6"
    assert message(client.post("/validate", content=large_review(8))) == "replicas 8"
    assert isinstance(offload._pool, ProcessPoolExecutor)
    assert offload._pool is not pool
    assert len(inline) == 1  # the first body after the kill met the broken pool


def test_a_pool_that_cannot_start_falls_back_to_parsing_inline(
    monkeypatch: pytest.MonkeyPatch, client: TestClient, inline: list[int]
) -> None:
    def cannot_start() -> ProcessPoolExecutor:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(offload, "_start_pool", cannot_start)
    body = large_review(4)
    assert message(client.post("/validate", content=body)) == "replicas 4"
    assert inline == [len(body)]
    assert offload._pool is None


def ignored_signals(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no SigIgn line for {pid}")


def test_workers_ignore_a_terminals_interrupt(client: TestClient, inline: list[int]) -> None:
    # Ctrl-C signals the whole process group; the server stops its workers itself.
    assert message(client.post("/validate", content=large_review(4))) == "replicas 4"
    pool = offload._pool
    assert isinstance(pool, ProcessPoolExecutor)
    assert pool._processes  # no public way to reach the workers
    for pid in pool._processes:
        assert ignored_signals(pid) & (1 << (signal.SIGINT - 1))


def signed(directory: Path, body: bytes) -> AdmissionRequest:
    """In the worker: leave its process id in `directory`, then decode."""
    (directory / str(os.getpid())).touch()
    return parse_review(body)


def test_idle_workers_exit_and_come_back_for_the_next_large_body(
    monkeypatch: pytest.MonkeyPatch, client: TestClient, inline: list[int], tmp_path: Path
) -> None:
    monkeypatch.setattr(offload, "WORKERS_IDLE_S", 0.0)
    monkeypatch.setattr(offload, "decode_in_worker", functools.partial(signed, tmp_path))
    assert message(client.post("/validate", content=large_review(4))) == "replicas 4"
    workers = {int(path.name) for path in tmp_path.iterdir()}
    assert workers
    deadline = time.monotonic() + WAIT_S
    while any(map(running, workers)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(map(running, workers)), "idle workers were kept"
    assert offload._pool is None
    assert message(client.post("/validate", content=large_review(6))) == "replicas 6"
    assert inline == []


class Gated(Recording):
    """Decides only once the test lets it, so the test can look at the budget meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.deciding, self.go = threading.Event(), threading.Event()

    async def decide(self, admitted: Review) -> Verdict:
        self.deciding.set()
        await asyncio.to_thread(self.go.wait, WAIT_S)
        return await super().decide(admitted)


@pytest.mark.parametrize(
    ("body", "bound", "factor"),
    [(SMALL, None, 1), (large_review(4), None, 2), (large_review(4), 1024 * 1024 + 1, 1)],
    ids=["small", "for the worker", "past the worker's bound"],
)
def test_a_body_for_the_worker_takes_twice_its_size_of_the_budget(
    monkeypatch: pytest.MonkeyPatch, body: bytes, bound: int | None, factor: int
) -> None:
    if bound is not None:
        monkeypatch.setattr(offload, "OFFLOAD_MAX_BYTES", bound)
    gated = Gated()

    async def ready() -> tuple[bool, str]:
        return True, "ready"

    app = AdmissionApp({"/validate": gated.endpoint()}, ready)
    client = TestClient(app)  # not entered: the app has no lifespan
    try:
        reply, poster = in_background(lambda: client.post("/validate", content=body))
        try:
            assert gated.deciding.wait(WAIT_S)
            assert app._budget.capacity - app._budget.free == factor * len(body)
        finally:
            gated.go.set()
            poster.join(WAIT_S)
        assert response_of(reply.result(WAIT_S))["allowed"] is False
        assert app._budget.free == app._budget.capacity
    finally:
        offload.shutdown()
