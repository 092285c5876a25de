"""Admission targets (SPEC section 4): decode the envelope, decide, record once, encode.

Everything before a routed POST is the shared edge (`common.edge`). Two failure channels, as
the API server expects: a body that is not an AdmissionReview gets a plain-text 400/413; a
review that parses always gets 200 and a verdict.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from common import edge, metrics, offload
from common.logs import get_logger
from common.models import EnvelopeError, Review, encode_response
from common.verdict import Decision, Verdict

TOO_LARGE = "admission review larger than 10 MiB"

Decide = Callable[[Review], Awaitable[Verdict]]

_log = get_logger("admission")


@dataclass(frozen=True)
class Decider:
    """What an admission function decides, and its written policy when its own code fails
    unexpectedly (a bug, not bad input)."""

    decide: Decide
    on_unexpected: Callable[[Exception], Verdict]


@dataclass(frozen=True)
class Endpoint:
    handler: str  # the `handler` metric label
    paths: frozenset[str]
    decide: Decide
    readiness: edge.Readiness
    # The endpoint's written policy when its own code fails unexpectedly (a bug, not bad input).
    on_unexpected: Callable[[Exception], Verdict]

    def resolve(self, path: str) -> edge.Post | None:
        return self.admit if path in self.paths else None

    async def admit(self, request: Request) -> Response:
        return await admit(request, self)


async def serve(request: Request, endpoint: Endpoint) -> Response:
    """One function's whole HTTP surface: the edge, then `admit` on the endpoint's paths."""
    return await edge.route(request, endpoint.readiness, endpoint.resolve)


async def admit(request: Request, endpoint: Endpoint) -> Response:
    """One AdmissionReview POST, routed already: decode, decide, record once, encode."""
    started = time.monotonic()
    body = await edge.body_or_refusal(request, TOO_LARGE)
    if isinstance(body, Response):
        metrics.record_admission(endpoint.handler, Decision.ERROR, time.monotonic() - started)
        return body
    try:
        review = Review(await offload.parse(body), received_at=time.monotonic())
    except EnvelopeError as exc:
        metrics.record_admission(endpoint.handler, Decision.ERROR, time.monotonic() - started)
        _log.debug("rejected body", extra={"handler": endpoint.handler, "error": str(exc)})
        return edge.text(str(exc), 400)

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
