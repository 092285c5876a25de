"""Large bodies are decoded off the event loop: a small review is answered meanwhile."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from common import offload
from common.admission import Endpoint, serve
from common.models import AdmissionRequest, Review, parse_review
from common.verdict import Decision, Verdict, deny
from tests.helpers import response_of, review, workload

WAIT_S = 60.0  # only a server that never answers reaches it


def large_review(replicas: int) -> bytes:
    obj = workload(replicas)
    filler = [{"name": f"env-{i}", "value": "x" * 40} for i in range(20_000)]
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = filler
    body = json.dumps(review(obj, workload(3))).encode()
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
        with TestClient(app) as test_client:
            yield test_client
    finally:
        offload.shutdown()


def message(reply: Any) -> str:
    return str(response_of(reply)["status"]["message"])


def test_small_review_answered_while_a_large_body_decodes(
    monkeypatch: pytest.MonkeyPatch, client: TestClient
) -> None:
    # A thread stands in for the worker process so the decode can wait on an event; the
    # event loop is what must stay free, and the TestClient runs both requests on one loop.
    decoding, release = threading.Event(), threading.Event()

    def held(body: bytes) -> AdmissionRequest:
        decoding.set()
        assert release.wait(WAIT_S)
        return parse_review(body)

    monkeypatch.setattr(offload, "decode_in_worker", held)
    monkeypatch.setattr(offload, "_start_pool", lambda: ThreadPoolExecutor(1))
    large: Future[Any] = Future()

    def post_large() -> None:
        try:
            large.set_result(client.post("/validate", content=large_review(7)))
        except BaseException as exc:
            large.set_exception(exc)

    poster = threading.Thread(target=post_large)
    poster.start()
    try:
        assert decoding.wait(WAIT_S), "the large body was not handed to the decoding pool"
        assert message(client.post("/validate", content=SMALL)) == "replicas 5"
        assert not large.done()
    finally:
        release.set()
        poster.join(WAIT_S)
    assert message(large.result(WAIT_S)) == "replicas 7"


def test_a_worker_process_decodes_large_reviews_like_the_inline_path(
    client: TestClient, recording: Recording
) -> None:
    body = large_review(4)
    assert message(client.post("/validate", content=body)) == "replicas 4"
    assert isinstance(offload._pool, ProcessPoolExecutor)
    assert recording.seen == [parse_review(body)]


@pytest.mark.parametrize(
    ("suffix", "reason"),
    [
        (b" x", "decode admission review: Extra data: line 1 column {} (char {})"),
        (b"\xff", "decode admission review: invalid UTF-8: invalid start byte"),
    ],
)
def test_a_malformed_large_body_gets_the_inline_400_line(
    client: TestClient, suffix: bytes, reason: str
) -> None:
    body = large_review(4) + suffix
    reply = client.post("/validate", content=body)
    assert reply.status_code == 400
    assert reply.text == reason.format(len(body), len(body) - 1)
    assert isinstance(offload._pool, ProcessPoolExecutor)


def test_a_dead_worker_falls_back_to_parsing_inline(client: TestClient) -> None:
    assert message(client.post("/validate", content=large_review(4))) == "replicas 4"
    pool = offload._pool
    assert isinstance(pool, ProcessPoolExecutor)
    for pid in list(pool._processes):  # no public way to reach the workers
        os.kill(pid, signal.SIGKILL)
    assert message(client.post("/validate", content=large_review(6))) == "replicas 6"
    # The broken pool is dropped; the next large body starts a fresh one.
    assert offload._pool is not pool
    assert message(client.post("/validate", content=large_review(8))) == "replicas 8"
    assert isinstance(offload._pool, ProcessPoolExecutor)
    assert offload._pool is not pool
