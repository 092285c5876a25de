"""The one HTTP shell every function goes through (SPEC sections 3 and 4).

It routes health, readiness and metrics, enforces POST and the 10 MiB cap, decodes the
envelope, runs the endpoint's decision, records exactly one admission sample, and encodes the
reply. Two failure channels, as the API server expects: a body that is not an AdmissionReview
gets a plain-text 400/413; a review that parses always gets 200 and a verdict.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from common import metrics
from common.logs import get_logger
from common.models import EnvelopeError, Review, encode_response, parse_review
from common.verdict import Decision, Verdict

MAX_BODY_BYTES = 10 * 1024 * 1024
TOO_LARGE = "admission review larger than 10 MiB"
NOT_FOUND = "404 page not found"

Decide = Callable[[Review], Awaitable[Verdict]]
Readiness = Callable[[], Awaitable[tuple[bool, str]]]

_log = get_logger("admission")


@dataclass(frozen=True)
class Endpoint:
    handler: str  # the `handler` metric label
    paths: frozenset[str]
    decide: Decide
    readiness: Readiness
    # The endpoint's written policy when its own code fails unexpectedly (a bug, not bad input).
    on_unexpected: Callable[[Exception], Verdict]


class BodyTooLarge(Exception):
    pass


def _text(body: str, status: int) -> Response:
    return PlainTextResponse(body, status_code=status)


async def read_body(request: Request) -> bytes:
    """The body, refused past 10 MiB by its declared length or while it streams in."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        if int(declared) > MAX_BODY_BYTES:
            raise BodyTooLarge
        # The server enforces the declared length, so the body cannot outgrow it.
        return await request.body()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def serve_probes(
    request: Request, readiness: Readiness, *, with_metrics: bool = True
) -> Response | None:
    """`/healthz`, `/readyz` and (unless a separate listener has it) `/metrics`, any method.

    None when the path is none of them. Shared by every function and the standalone server.
    """
    path = request.scope["path"]  # not request.url, which parses the whole URL per access
    if path == "/healthz":
        return _text("ok", 200)
    if path == "/readyz":
        ready, line = await readiness()
        return _text(line, 200 if ready else 503)
    if path == "/metrics" and with_metrics:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)
    return None


def not_found() -> Response:
    return _text(NOT_FOUND, 404)


def method_not_allowed() -> Response:
    return PlainTextResponse("405 method not allowed", 405, headers={"Allow": "POST"})


async def serve(request: Request, endpoint: Endpoint) -> Response:
    probe = await serve_probes(request, endpoint.readiness)
    if probe is not None:
        return probe
    if request.scope["path"] not in endpoint.paths:
        return not_found()
    if request.method != "POST":
        return method_not_allowed()
    return await admit(request, endpoint)


async def admit(request: Request, endpoint: Endpoint) -> Response:
    """One AdmissionReview POST, routed already: decode, decide, record once, encode."""
    started = time.monotonic()
    try:
        body = await read_body(request)
        review = Review(parse_review(body), received_at=time.monotonic())
    except BodyTooLarge:
        metrics.record_admission(endpoint.handler, Decision.ERROR, time.monotonic() - started)
        return _text(TOO_LARGE, 413)
    except EnvelopeError as exc:
        metrics.record_admission(endpoint.handler, Decision.ERROR, time.monotonic() - started)
        _log.debug("rejected body", extra={"handler": endpoint.handler, "error": str(exc)})
        return _text(str(exc), 400)
    except ClientDisconnect:
        metrics.record_admission(endpoint.handler, Decision.ERROR, time.monotonic() - started)
        return _text("client disconnected", 400)

    uid = review.request.uid
    try:
        verdict = await endpoint.decide(review)
    except Exception as exc:  # a bug must still produce an answer, never a traceback
        _log.exception(
            "unexpected error in decision", extra={"handler": endpoint.handler, "uid": uid}
        )
        verdict = endpoint.on_unexpected(exc)
    elapsed = time.monotonic() - started
    metrics.record_admission(endpoint.handler, verdict.decision, elapsed)
    if not verdict.allowed:
        _log.info(
            "denied",
            extra={
                "handler": endpoint.handler,
                "uid": uid,
                "namespace": review.request.namespace,
                "decision": verdict.decision.value,
                "error": verdict.message,
                "durationMs": round(elapsed * 1000, 3),
            },
        )
    return Response(encode_response(uid, verdict), media_type="application/json")
