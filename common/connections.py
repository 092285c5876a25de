"""Bounds on what one client can hold of the standalone server (its listeners are uvicorn's).

uvicorn bounds none of this by itself: an idle or trickling connection stays open for ever, a
connection that never finishes its request head is never timed out, and any number of large
bodies are read and parsed at once. Each connection here goes through `Guard`, which runs one
timer per phase and aborts the connection when it fires:

- the TLS handshake and a request head: REQUEST_HEAD_TIMEOUT from the connection, or from
  the head's first byte on a kept-alive connection (the handshake's is asyncio's own timeout,
  set at `create_server`);
- its body: REQUEST_BODY_TIMEOUT from the complete head until the body is read (waiting for
  the body budget counts: the API server gives up on a webhook after at most 30 s anyway);
- between requests on a keep-alive connection: IDLE_TIMEOUT (see config for its default).

At most MAX_CONNECTIONS are open per listener; one more is aborted as soon as the handshake
is done (handshakes in progress are bounded by their deadline only).
Bodies reserve their declared length (10 MiB when not declared) from BODY_BUDGET_BYTES before
they are read, so a burst of large reviews is read and parsed a few at a time while small
ones, which fit, go ahead of them. Bodies of 1 to 4 MiB are parsed in a worker process
(common.offload), so the event loop answers small reviews meanwhile; they take twice their size
of the budget, which is held until the review is answered, so it bounds the memory of the
bodies, of their parse in the worker and of the decoded reviews together.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, cast

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.utils import get_remote_addr

from common import metrics
from common.config import Settings
from common.logs import get_logger

BODY_BUDGET_BYTES = 16 * 1024 * 1024

_log = get_logger("connections")


class Phase(Enum):
    HEAD = "head"  # waiting for (the rest of) a request head
    BODY = "body"  # the app has the head; the body is not read yet
    BUSY = "busy"  # deciding or answering: no deadline of ours
    IDLE = "idle"  # between requests


@dataclass
class Limits:
    """One listener's bounds and its open connections, by peer address (the ASGI `client`)."""

    head_s: float
    body_s: float
    idle_s: float
    max_connections: int
    open: dict[tuple[str, int], Guard] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            head_s=settings.head_timeout_s,
            body_s=settings.body_timeout_s,
            idle_s=settings.idle_timeout_s,
            max_connections=settings.max_connections,
        )


# uvicorn's (private, uvicorn < 1 is pinned) method that cancels a protocol's keep-alive timer.
KEEPALIVE_RELEASE: Final = "_unset_keepalive_if_required"


class Guard(asyncio.Protocol):
    """Wraps uvicorn's protocol for one connection; see the module docstring for the phases."""

    def __init__(self, inner: asyncio.Protocol, limits: Limits) -> None:
        self._inner = inner
        self._limits = limits
        self._transport: asyncio.Transport | None = None
        self._key: tuple[str, int] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.phase = Phase.HEAD
        self.client_certified = False

    # -- asyncio.Protocol, forwarded ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's TLS transport does not derive from asyncio's.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        if len(self._limits.open) >= self._limits.max_connections:
            metrics.CONNECTIONS_CLOSED_TOTAL.labels(bound="capacity").inc()
            _log.warning("connection refused: at capacity",
                         extra={"connections": len(self._limits.open)})  # fmt: skip
            transport.abort()
            self._inner = asyncio.Protocol()  # uvicorn never saw this connection
            return
        # Non-empty only for a certificate the TLS context verified (it asks only with CLIENT_CA).
        self.client_certified = bool(transport.get_extra_info("peercert"))
        self._key = get_remote_addr(transport)
        if self._key is not None:
            self._limits.open[self._key] = self
        self._arm(self._limits.head_s, Phase.HEAD)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.phase is Phase.IDLE:
            self._arm(self._limits.head_s, Phase.HEAD)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel()
        if self._key is not None and self._limits.open.get(self._key) is self:
            del self._limits.open[self._key]
        self._inner.connection_lost(exc)
        if exc is not None:
            # uvicorn cancels its keep-alive timer only on a clean close. A connection lost with
            # an error (a TLS client that closes without close_notify, as Python's do) would stay
            # referenced by that timer, about 42 KiB each, until IDLE_TIMEOUT.
            release = getattr(self._inner, KEEPALIVE_RELEASE, None)
            if release is not None:
                release()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # -- request phases, told by BoundedApp -----------------------------------------------------

    def head_received(self) -> None:
        self._arm(self._limits.body_s, Phase.BODY)

    def body_received(self) -> None:
        self._cancel()
        self.phase = Phase.BUSY

    def response_sent(self) -> None:
        self._arm(self._limits.idle_s, Phase.IDLE)

    # -- the timer ------------------------------------------------------------------------------

    def _arm(self, seconds: float, phase: Phase) -> None:
        self._cancel()
        self.phase = phase
        if self._closed:  # an app still answering a connection that is gone
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(seconds, self._expired, phase)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, phase: Phase) -> None:
        self._timer = None
        self._closed = True
        metrics.CONNECTIONS_CLOSED_TOTAL.labels(bound=phase.value).inc()
        _log.debug("connection closed", extra={"bound": phase.value, "client": self._key})
        if self._transport is not None:
            # abort, not close: a TLS close waits for the peer's close_notify, which a client
            # that stopped talking never sends.
            self._transport.abort()


# Where BoundedApp tells the app whether the peer presented a verified client certificate.
TLS_EXTENSION = "cocoon.tls"
CLIENT_CERTIFIED = "client_certified"


def client_certified(scope: Scope) -> bool:
    return bool(scope.get("extensions", {}).get(TLS_EXTENSION, {}).get(CLIENT_CERTIFIED))


class BoundedApp:
    """Tells each request's Guard when its head, body and response are done."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self._app = app
        self._limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        guard = self._limits.open.get(tuple(client)) if client else None
        if guard is None or scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        guard.head_received()
        extensions = scope.setdefault("extensions", {})
        extensions[TLS_EXTENSION] = {CLIENT_CERTIFIED: guard.client_certified}

        async def receive_body() -> Message:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                guard.body_received()
            return message

        async def send_response(message: Message) -> None:
            if message["type"] == "http.response.start":
                guard.body_received()  # a reply without reading the body (probes, 413, 405)
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                guard.response_sent()

        await self._app(scope, receive_body, send_response)


class ByteBudget:
    """Bytes of request bodies being read and parsed at once, shared by one listener.

    Not first come, first served: a waiter goes ahead as soon as its size fits, so a small review
    never queues behind large ones waiting for room.
    """

    def __init__(self, capacity: int = BODY_BUDGET_BYTES) -> None:
        self.capacity = capacity
        self.free = capacity
        self._waiters: list[asyncio.Future[None]] = []

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        size = min(max(size, 0), self.capacity)
        while self.free < size:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        self.free -= size
        try:
            yield
        finally:
            self.free += size
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


def protocol_factory(
    config: uvicorn.Config, server: uvicorn.Server, limits: Limits
) -> Callable[[], asyncio.Protocol]:
    """uvicorn's protocol for each accepted connection, inside a Guard."""

    def create() -> asyncio.Protocol:
        inner = config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=server.server_state, app_state=server.lifespan.state
        )
        return Guard(inner, limits)

    return create


async def serve_sockets(
    config: uvicorn.Config,
    server: uvicorn.Server,
    sockets: list[socket.socket],
    limits: Limits,
    context: ssl.SSLContext | None,
) -> list[asyncio.base_events.Server]:
    """What uvicorn.Server.startup does for passed sockets, plus the Guard and a TLS
    handshake deadline, which uvicorn offers no way to set."""
    loop = asyncio.get_running_loop()
    factory = protocol_factory(config, server, limits)
    servers = []
    for sock in sockets:
        extra: dict[str, Any] = {"ssl_handshake_timeout": limits.head_s} if context else {}
        servers.append(
            await loop.create_server(
                factory, sock=sock, ssl=context, backlog=config.backlog, **extra
            )
        )
    return servers
