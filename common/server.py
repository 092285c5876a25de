"""The standalone server (SPEC 11): `cocoon-webhook`, also `python -m common.server`.

One process, one event loop, two uvicorn listeners: the admission paths over TLS (with the
same endpoints and shell as function mode) and plain-HTTP `/metrics`. The reaper sweeps in a
thread of its own. Everything that can fail at start (settings, the TLS pair, the kubeconfig,
either bind) fails before anything is served, with one JSON line and a non-zero exit.

The TLS context reloads itself: every handshake first checks whether TLS_CERT or TLS_KEY
changed on disk (a stat of each, far cheaper than the handshake) and, if they did, switches
the connection to a context loaded from the new pair. cert-manager renews the mounted secret
in place; the Go original needed a restart to pick it up (B12).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import uvicorn
import uvloop
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from common import metrics, offload, reaper, runtime
from common.admission import Endpoint, admit
from common.config import SECOND, Settings, format_go_duration
from common.connections import BoundedApp, ByteBudget, Limits, client_certified, serve_sockets
from common.edge import MAX_BODY_BYTES, Post, Readiness, not_found, route
from common.health import READY, all_ready
from common.kube import ClientKubeApi, KubeApi, KubeError
from common.logs import ROOT_LOGGER, get_logger

# SPEC 11.6: in-flight requests of both listeners share one budget once the listeners close
# (at SIGINT, or SHUTDOWN_DELAY after SIGTERM).
SHUTDOWN_GRACE_S = 15.0
# A pair that failed to load is retried this often (silently) while the files look unchanged:
# a non-atomic rewrite can leave the same size and mtime on a half-written file.
RELOAD_RETRY_S = 1.0
# Blocking Kubernetes calls run in this pool (asyncio.to_thread). asyncio's default, CPUs + 4,
# would queue concurrent admissions behind each other on a pod limited to half a CPU.
IO_THREADS = 32
IO_THREAD_PREFIX = "cocoon-io"
# After the last in-flight request, how long connections may take to flush and close.
CLOSE_LINGER_S = 0.5

CLIENT_CERTIFICATE_REQUIRED = "client certificate required (CLIENT_CA is set)"

_CERT_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----")
_KEY_PEM = re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")
_SSL_LOCATION = re.compile(r"\s*\(_ssl\.c:\d+\)$")

_log = get_logger("server")


class StartupError(Exception):
    """A reason not to start; `main` logs it as one line and exits 1."""


# --- TLS: the pair, and reloading it ---------------------------------------------------------


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise ValueError("encrypted private keys are not supported")


def _ssl_reason(exc: Exception) -> str:
    return _SSL_LOCATION.sub("", " ".join(str(exc).split()))


def load_pair(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """A server context for the PEM pair, TLS 1.2 at least; StartupError says what is wrong.

    With `client_ca`, a client certificate is asked for and, when one is sent, must chain to
    it; whether the admission paths insist on one is `AdmissionApp`'s business (the kubelet's
    probes on the same port have none).
    """
    files = [
        ("TLS_CERT", cert, _CERT_PEM, "certificate"),
        ("TLS_KEY", key, _KEY_PEM, "private key"),
    ]
    if client_ca:
        files.append(("CLIENT_CA", client_ca, _CERT_PEM, "certificate"))
    for name, path, marker, what in files:
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError as exc:
            raise StartupError(f"read {name} {path}: {exc.strerror or exc}") from None
        # OpenSSL's own word for an empty or non-PEM file is "PEM lib"; say which file instead.
        if not marker.search(data):
            raise StartupError(f"{name} {path}: no PEM {what} found")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except (ssl.SSLError, ValueError, OSError) as exc:
        raise StartupError(f"load TLS_CERT {cert} with TLS_KEY {key}: {_ssl_reason(exc)}") from None
    if client_ca:
        require_client_certificates(context, client_ca)
    return context


def require_client_certificates(context: ssl.SSLContext, client_ca: str) -> None:
    """Ask every client for a certificate signed by `client_ca` (CERT_OPTIONAL: see load_pair)."""
    try:
        context.load_verify_locations(cafile=client_ca)
    except (ssl.SSLError, OSError) as exc:
        raise StartupError(f"load CLIENT_CA {client_ca}: {_ssl_reason(exc)}") from None
    context.verify_mode = ssl.CERT_OPTIONAL


Signature = tuple[tuple[int, int, int, int], tuple[int, int, int, int]]


def _stat(path: str) -> tuple[int, int, int, int]:
    try:
        # Follows symlinks: a Secret volume swaps a `..data` symlink, which changes the inode.
        st = os.stat(path)
    except OSError:
        return (-1, -1, -1, -1)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class ReloadingTLS:
    """The listener's SSLContext, serving the last pair that loaded.

    `context` is loaded from the pair at start and carries an SNI callback, which OpenSSL calls
    on every ClientHello (with or without a server name). When the files' signature (device,
    inode, size, mtime) changed since the last load, the callback loads the new pair into a
    fresh context and moves the connection onto it; connections already established keep
    theirs. A pair that fails to load is logged once per change and the previous one serves on.
    """

    def __init__(
        self,
        cert: str,
        key: str,
        clock: Callable[[], float] = time.monotonic,
        client_ca: str | None = None,
    ) -> None:
        self._cert = cert
        self._key = key
        self._client_ca = client_ca
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded = self._signature()
        self.context = load_pair(cert, key, client_ca)
        self.context.sni_callback = self._on_client_hello
        self._current = self.context
        self._failed: Signature | None = None
        self._failed_at = 0.0

    def _signature(self) -> Signature:
        return _stat(self._cert), _stat(self._key)

    def current(self) -> ssl.SSLContext:
        """The context for the next handshake, reloading the pair first if it changed."""
        signature = self._signature()
        with self._lock:
            if signature == self._loaded:
                return self._current
            now = self._clock()
            if signature == self._failed and now - self._failed_at < RELOAD_RETRY_S:
                return self._current
            try:
                context = load_pair(self._cert, self._key, self._client_ca)
            except StartupError as exc:
                if signature != self._failed:
                    _log.error(
                        "TLS pair not reloaded; the previous certificate keeps serving",
                        extra={"error": str(exc)},
                    )
                self._failed, self._failed_at = signature, now
                return self._current
            self._current, self._loaded, self._failed = context, signature, None
        _log.info("TLS pair reloaded", extra={"cert": self._cert, "key": self._key})
        return context

    def _on_client_hello(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        try:
            context = self.current()
            if connection.context is not context:
                connection.context = context
        except Exception:  # an exception here would abort the handshake with an alert
            _log.exception("TLS reload check failed")


# --- the two listeners' applications ---------------------------------------------------------


class AdmissionApp:
    """The TLS listener. Exact paths, like the Go original's mux: `/` and `/metrics` are 404.

    A plain ASGI callable rather than Starlette's router, which would redirect `/mutate/` to
    `/mutate` and answer 404/405 with its own bodies instead of the shell's.
    """

    def __init__(
        self,
        endpoints: Mapping[str, Endpoint],
        readiness: Readiness,
        *,
        client_certificates: bool = False,
    ) -> None:
        self._admissions: dict[str, Post] = {
            path: partial(self._admit, endpoint=endpoint) for path, endpoint in endpoints.items()
        }
        self._readiness = readiness
        self._client_certificates = client_certificates
        self._budget = ByteBudget()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self._respond(request)
        except Exception:  # the shell answers every review; this is for a bug outside it
            _log.exception("unexpected error", extra={"path": request.url.path})
            response = PlainTextResponse("internal error", 500)
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        return await route(request, self._readiness, self._resolve, with_metrics=False)

    def _resolve(self, path: str) -> Post | None:
        return self._admissions.get(path)

    async def _admit(self, request: Request, endpoint: Endpoint) -> Response:
        if self._client_certificates and not client_certified(request.scope):
            return PlainTextResponse(CLIENT_CERTIFICATE_REQUIRED, 403)
        declared = request.headers.get("content-length", "")
        size = int(declared) if declared.isdigit() and len(declared) < 12 else MAX_BODY_BYTES
        async with self._budget.hold(offload.budget_bytes(size)):
            return await admit(request, endpoint)


async def metrics_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The metrics listener: `/metrics`, any method, and 404 for everything else."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/metrics":
        body, content_type = metrics.render()
        response = Response(body, media_type=content_type)
    else:
        response = not_found()
    await response(scope, receive, send)


# --- the reaper loop -------------------------------------------------------------------------

Sweep = Callable[[datetime], object]


def reaper_sweep(kube: KubeApi, settings: Settings) -> Sweep:
    """One sweep with this process's client and settings; it logs and counts itself."""

    def sweep(now: datetime) -> object:
        return reaper.sweep(kube, settings, now)

    return sweep


class ReaperLoop:
    """Sweep at start, then every `interval_s`, in one thread of its own.

    One thread is what keeps sweeps from overlapping: a sweep that outlasts the interval skips
    the ticks it missed instead of queueing them. Every replica runs one loop; concurrent
    sweeps settle through the ConfigMaps' resourceVersions.
    """

    def __init__(self, sweep: Sweep, interval_s: float) -> None:
        self._sweep = sweep
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        """True when the loop has ended (a sweep in progress is not interrupted)."""
        if self._thread.is_alive():
            self._thread.join(max(timeout, 0))
        return not self._thread.is_alive()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self._sweep(datetime.now(UTC))
            except Exception:  # the loop outlives a failed sweep; the next tick retries
                _log.exception("reaper sweep failed")
            now = time.monotonic()
            next_at += self._interval_s
            if next_at <= now:
                next_at += ((now - next_at) // self._interval_s + 1) * self._interval_s
            self._stop.wait(next_at - now)


# --- listeners -------------------------------------------------------------------------------


def bind(address: tuple[str, int], variable: str) -> socket.socket:
    """A listening socket for `host:port`; an empty host means every interface, as in Go."""
    host, port = address
    try:
        if not host:
            dual = socket.has_dualstack_ipv6()
            family, bind_host = (socket.AF_INET6, "::") if dual else (socket.AF_INET, "0.0.0.0")
        else:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, bind_host = found[0][0], str(found[0][4][0])
        # The protocol is named, not left 0 as socket.create_server leaves it: asyncio sets
        # TCP_NODELAY only on connections whose socket says TCP, and without it every reply
        # sent as two writes waits ~40 ms for the client's delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((bind_host, port))
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        reason = exc.strerror or str(exc)
        raise StartupError(f"listen on {variable} {shown}: {reason}") from None
    return sock


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Listener(uvicorn.Server):
    """uvicorn without its own signal handling (`run` stops both listeners on one signal),
    with every connection bounded (common.connections)."""

    limits: Limits

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        assert sockets is not None, "the listeners are always given their bound sockets"
        self.servers = await serve_sockets(self.config, self, sockets, self.limits, self.config.ssl)
        self.started = True


def _listener(app: Any, context: ssl.SSLContext | None, limits: Limits) -> _Listener:
    config = uvicorn.Config(
        BoundedApp(app, limits),
        interface="asgi3",
        lifespan="off",
        ws="none",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=round(limits.idle_s),
    )
    config.load()
    # Set after load(), which only knows how to build a context from file paths; ours reloads.
    config.ssl = context
    listener = _Listener(config)
    listener.limits = limits
    return listener


# --- the process -----------------------------------------------------------------------------


@dataclass
class Prepared:
    """Everything `main` checks before serving: if this exists, the server can start."""

    settings: Settings
    tls: ReloadingTLS
    kube: KubeApi
    endpoints: dict[str, Endpoint]
    webhook_socket: socket.socket
    metrics_socket: socket.socket


def prepare(settings: Settings) -> Prepared:
    """SPEC 11 steps 1-2: the pair, the kubeconfig, both binds. Raises StartupError."""
    tls = ReloadingTLS(settings.tls_cert, settings.tls_key, client_ca=settings.client_ca)
    kube = runtime.process().kube
    if isinstance(kube, ClientKubeApi):
        try:
            kube.load()
        except KubeError as exc:
            raise StartupError(str(exc)) from None
    endpoints = {row.path: runtime.endpoint(row.handler) for row in runtime.ADMISSION_FUNCTIONS}
    webhook_socket = bind(settings.listen_addr, "LISTEN_ADDR")
    try:
        metrics_socket = bind(settings.metrics_addr, "METRICS_ADDR")
    except StartupError:
        webhook_socket.close()
        raise
    return Prepared(settings, tls, kube, endpoints, webhook_socket, metrics_socket)


def _route_library_logs(level: int) -> None:
    """uvicorn's and asyncio's warnings as JSON lines next to ours; their info chatter goes."""
    handlers = list(logging.getLogger(ROOT_LOGGER).handlers)
    for name in ("uvicorn.error", "asyncio"):
        logger = logging.getLogger(name)
        logger.handlers = handlers
        logger.propagate = False
        logger.setLevel(max(level, logging.WARNING))


def _io_threads() -> list[threading.Thread]:
    return [
        t for t in threading.enumerate() if t.name.startswith(IO_THREAD_PREFIX) and t.is_alive()
    ]


async def run(prepared: Prepared, reaper_loop: ReaperLoop | None) -> int:
    """Serve until SIGTERM/SIGINT, then drain within SHUTDOWN_GRACE_S. Returns the exit code."""
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(IO_THREADS, thread_name_prefix=IO_THREAD_PREFIX)
    loop.set_default_executor(executor)

    stop_at: list[float] = []
    closing_at: list[float] = []

    async def not_stopping() -> tuple[bool, str]:
        # Terminating: leave the Service's endpoints while still answering what arrives.
        return (False, "not ready: shutting down") if stop_at else READY

    # The one /readyz of the server covers every function it serves: theirs (the table's), e.g.
    # mutate's caches' first sync, and ours.
    readiness = all_ready(not_stopping, *(e.readiness for e in prepared.endpoints.values()))
    if prepared.settings.caches_enabled:
        runtime.process().caches.ensure_started()  # now, not at the first probe
    webhook = _listener(
        AdmissionApp(
            prepared.endpoints, readiness, client_certificates=bool(prepared.settings.client_ca)
        ),
        prepared.tls.context,
        Limits.of(prepared.settings),
    )
    metrics_listener = _listener(metrics_app, None, Limits.of(prepared.settings))
    listeners = (webhook, metrics_listener)
    watchdogs: list[asyncio.Task[None]] = []

    async def drain(since: float) -> None:
        """End the listeners' wait once no request is in flight, or at the deadline.

        uvicorn waits for every connection to close, and asyncio closes a TLS connection only
        after the peer answers its close_notify (or after 30 s): an idle keep-alive client
        that never reads would hold the exit until the deadline. Once the last request is
        done, connections get CLOSE_LINGER_S to flush and go.
        """
        idle_since: float | None = None
        while (now := time.monotonic()) < since + SHUTDOWN_GRACE_S:
            if any(listener.server_state.tasks for listener in listeners):
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= CLOSE_LINGER_S:
                break
            await asyncio.sleep(0.05)
        for listener in listeners:
            listener.force_exit = True

    def close() -> None:
        if closing_at:
            return
        closing_at.append(time.monotonic())
        for listener in listeners:
            listener.should_exit = True
        watchdogs.append(loop.create_task(drain(closing_at[0])))

    async def close_after(delay: float) -> None:
        await asyncio.sleep(delay)
        _log.info("closing listeners", extra={"inFlight": _in_flight()})
        close()

    def _in_flight() -> int:
        return sum(len(listener.server_state.tasks) for listener in listeners)

    def on_signal(signum: int) -> None:
        if stop_at:
            # A second signal: stop waiting for in-flight requests.
            _log.warning("second signal; not waiting for in-flight requests")
            close()
            for listener in listeners:
                listener.force_exit = True
            return
        stop_at.append(time.monotonic())
        # SIGTERM comes from the kubelet while the pod's endpoints are still being removed:
        # keep accepting for SHUTDOWN_DELAY. SIGINT is someone at a terminal: stop now.
        delay = prepared.settings.shutdown_delay_s if signum == signal.SIGTERM else 0.0
        _log.info(
            "stopping",
            extra={
                "signal": signal.Signals(signum).name,
                "inFlight": _in_flight(),
                "closeIn": format_go_duration(round(delay * SECOND)),
            },
        )
        if reaper_loop is not None:
            reaper_loop.stop()
        if delay > 0:
            watchdogs.append(loop.create_task(close_after(delay)))
        else:
            close()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    _log.info(
        "listening",
        extra={
            "webhookAddr": _address(prepared.webhook_socket),
            "metricsAddr": _address(prepared.metrics_socket),
            "reaperInterval": format_go_duration(
                round(prepared.settings.reaper_interval_s * SECOND)
            ),
        },
    )
    if reaper_loop is not None:
        reaper_loop.start()

    async def serve(listener: _Listener, sock: socket.socket) -> bool:
        try:
            await listener.serve(sockets=[sock])
        except (Exception, SystemExit) as exc:  # one listener failing stops the other
            _log.error("listener failed", extra={"error": str(exc) or type(exc).__name__})
            for other in listeners:
                other.should_exit = True
            return False
        return True

    results = await asyncio.gather(
        serve(webhook, prepared.webhook_socket), serve(metrics_listener, prepared.metrics_socket)
    )
    for task in watchdogs:
        task.cancel()

    stopping_since = stop_at[0] if stop_at else time.monotonic()
    deadline = (closing_at[0] if closing_at else time.monotonic()) + SHUTDOWN_GRACE_S
    if reaper_loop is not None:
        reaper_loop.stop()
        if not reaper_loop.join(deadline - time.monotonic()):
            _log.warning("reaper sweep still running at exit")
    # Idle workers leave at once; a busy one is a blocking API call that a review already gave
    # up on (mutate's deadline) and that finishes within its own timeout.
    executor.shutdown(wait=False, cancel_futures=True)
    offload.shutdown()
    while _io_threads() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    code = 0 if all(results) else 1
    busy = len(_io_threads())
    elapsed_ms = round((time.monotonic() - stopping_since) * 1000, 1)
    _log.info("stopped", extra={"durationMs": elapsed_ms, "busyThreads": busy})
    if busy:
        # The interpreter would join these threads at exit, past the grace period.
        sys.stdout.flush()
        os._exit(code)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cocoon-webhook",
        description="Serve the cocoon admission webhooks over TLS, /metrics, and the reaper loop "
        "(configured by environment variables; see the README).",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["serve"],
        default="serve",
        help="what to do (the only command, and the default)",
    )
    parser.parse_args(argv)
    settings = runtime.process().settings  # exits 1 with one line naming a bad variable
    _route_library_logs(settings.log_level)
    try:
        prepared = prepare(settings)
    except StartupError as exc:
        _log.critical(str(exc))
        return 1
    reaper_loop = ReaperLoop(reaper_sweep(prepared.kube, settings), settings.reaper_interval_s)
    # uvloop: faster, and its TLS transport leaves an idle connection's read buffer untouched
    # where asyncio's zero-fills 256 KiB of it (the 1,000-idle-connections bench).
    return uvloop.run(run(prepared, reaper_loop))


if __name__ == "__main__":
    sys.exit(main())
