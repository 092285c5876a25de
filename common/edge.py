"""The HTTP edge every target goes through (SPEC sections 3 and 4): probes, route, method, body.

Admission targets (`common.admission`), the reap target (`common.reap_target`) and the
standalone server differ only in what a routed POST does; everything before it is here, so
`/healthz`, `/readyz`, `/metrics`, 404, 405 and the 10 MiB cap answer alike on every port.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from common import metrics

MAX_BODY_BYTES = 10 * 1024 * 1024
NOT_FOUND = "404 page not found"
CLIENT_DISCONNECTED = "client disconnected"

Readiness = Callable[[], Awaitable[tuple[bool, str]]]
# What a routed POST does; None from a resolver means "no target on this path" (404).
Post = Callable[[Request], Awaitable[Response]]
Resolve = Callable[[str], Post | None]


class BodyTooLarge(Exception):
    pass


def text(body: str, status: int) -> Response:
    return PlainTextResponse(body, status_code=status)


def not_found() -> Response:
    return text(NOT_FOUND, 404)


def method_not_allowed() -> Response:
    return PlainTextResponse("405 method not allowed", 405, headers={"Allow": "POST"})


async def serve_probes(
    request: Request, readiness: Readiness, *, with_metrics: bool = True
) -> Response | None:
    """`/healthz`, `/readyz` and (unless a separate listener has it) `/metrics`, any method.

    None when the path is none of them.
    """
    path = request.scope["path"]  # not request.url, which parses the whole URL per access
    if path == "/healthz":
        return text("ok", 200)
    if path == "/readyz":
        ready, line = await readiness()
        return text(line, 200 if ready else 503)
    if path == "/metrics" and with_metrics:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)
    return None


async def route(
    request: Request, readiness: Readiness, resolve: Resolve, *, with_metrics: bool = True
) -> Response:
    """Probes first, then the path's target (404 without one), which only takes POST (405)."""
    probe = await serve_probes(request, readiness, with_metrics=with_metrics)
    if probe is not None:
        return probe
    post = resolve(request.scope["path"])
    if post is None:
        return not_found()
    if request.method != "POST":
        return method_not_allowed()
    return await post(request)


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


async def body_or_refusal(request: Request, too_large: str) -> bytes | Response:
    """The body, or the answer for a body we never got whole: 413 `too_large`, or 400."""
    try:
        return await read_body(request)
    except BodyTooLarge:
        return text(too_large, 413)
    except ClientDisconnect:
        return text(CLIENT_DISCONNECTED, 400)
