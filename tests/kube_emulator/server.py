"""HTTP(S) serving: a threaded HTTP/1.1 server in front of `rest.Api` and the test controls.

Performance matters more than anything else here, because every test talks to this server:
one thread per connection (`ThreadingHTTPServer`), HTTP/1.1 keep-alive with a Content-Length
on every answer, `disable_nagle_algorithm` (small answers would otherwise wait ~40 ms for the
client's delayed ACK), request bodies always read in full (an unread body would be taken for
the next request on the connection), request headers parsed without the email package,
no per-request logging. TLS handshakes happen in the
connection's thread, never in the accept loop. Watches stream with chunked encoding.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import json
import select
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from tests.kube_emulator import control, errors, seed
from tests.kube_emulator.admission import AdmissionChain
from tests.kube_emulator.messages import Request, Response, dumps, error_response
from tests.kube_emulator.resources import Registry
from tests.kube_emulator.rest import Api
from tests.kube_emulator.store import Store

CONTROL_PREFIX = "/_emulator/"
MAX_BODY = 64 * 1024 * 1024
# struct linger {l_onoff=1, l_linger=0}: close() then resets the connection
_LINGER_RESET = b"\x01\x00\x00\x00\x00\x00\x00\x00"


class Emulator:
    """Everything one emulator process serves: store, API, controls and the seed to reset to."""

    def __init__(
        self, *, seed_name: str = "namespaces", service_addresses: dict[str, str] | None = None
    ) -> None:
        self.store = Store(Registry())
        self.chain = AdmissionChain(self.store, dict(service_addresses or {}))
        self.api = Api(self.store, self.chain, server_address=lambda: self.address)
        self.chain.defaulter = self.api.default
        self.controls = control.Controls()
        self.seed_name = seed_name
        self.address = "127.0.0.1"
        seed.apply_seed(self.api, seed_name)

    def reset(self, seed_name: str | None = None) -> None:
        self.store.reset()
        self.controls.clear_faults()
        self.chain.clear_audit()
        seed.apply_seed(self.api, seed_name or self.seed_name)

    def control(self, method: str, path: str, body: bytes) -> Response:
        what = path[len(CONTROL_PREFIX) :].strip("/")
        try:
            payload: Any = json.loads(body) if body.strip() else None
        except ValueError:
            return _plain(400, "body is not JSON")
        if what == "requests":
            if method == "GET":
                return Response(200, dumps(self.controls.requests()))
            if method == "DELETE":
                self.controls.clear_requests()
                return Response(200, b"{}")
        elif what == "faults":
            if method == "GET":
                return Response(200, dumps(self.controls.faults()))
            if method == "DELETE":
                self.controls.clear_faults()
                return Response(200, b"{}")
            if method == "POST":
                try:
                    fault = control.parse_fault(payload)
                except ValueError as bad:
                    return _plain(400, str(bad))
                self.controls.add_fault(fault)
                return Response(201, dumps(fault.to_json()))
        elif what == "audit":
            if method == "GET":
                return Response(200, dumps(self.chain.audit_events()))
            if method == "DELETE":
                self.chain.clear_audit()
                return Response(200, b"{}")
        elif what == "reset" and method == "POST":
            name = (payload or {}).get("seed") if isinstance(payload, dict) else None
            try:
                self.reset(name)
            except ValueError as bad:
                return _plain(400, str(bad))
            return Response(200, dumps({"resourceVersion": str(self.store.resource_version)}))
        elif what == "compact" and method == "POST":
            return Response(200, dumps({"compacted": str(self.store.compact())}))
        elif what == "objects" and method == "POST":
            return self._create_many(payload)
        else:
            return _plain(404, f"unknown control {path}")
        return _plain(405, f"{method} not allowed on {path}")

    def _create_many(self, payload: Any) -> Response:
        """Bulk seeding for benches: one control call instead of thousands of HTTP creates,
        each object still created through the REST layer's rules."""
        if not isinstance(payload, dict) or not isinstance(payload.get("objects"), list):
            return _plain(400, 'want {"path": ..., "objects": [...]}')
        path = payload.get("path")
        if not isinstance(path, str):
            return _plain(400, "path must be a string")
        try:
            for obj in payload["objects"]:
                self.api.create_object(path.format(**obj.get("metadata", {})), obj)
        except (RuntimeError, KeyError, AttributeError) as bad:
            return _plain(400, str(bad))
        return Response(200, dumps({"created": len(payload["objects"])}))


def _plain(status: int, text: str) -> Response:
    return Response(status, (text + "\n").encode(), "text/plain; charset=utf-8")


class Headers(dict[str, str]):
    """Request headers by lower-cased name; `get` ignores case like email.message.Message."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


MAX_HEADERS = 100
_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The Date header, formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "kube-emulator"
    sys_version = ""
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def parse_request(self) -> bool:
        """BaseHTTPRequestHandler.parse_request without the email package: the stdlib parses
        headers with email.feedparser, which costs more than serving a GET from the store."""
        self.command = ""
        self.request_version = self.default_request_version
        self.close_connection = True
        raw: bytes = self.raw_requestline  # type: ignore[attr-defined]  # set by handle_one_request
        self.requestline = str(raw, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            self.send_error(400, f"Bad request syntax ({self.requestline!r})")
            return False
        command, path, version = words
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            self.send_error(505, f"Invalid HTTP version ({version})")
            return False
        self.command, self.path, self.request_version = command, path, version
        if path.startswith("//"):
            self.path = "/" + path.lstrip("/")
        headers = Headers()
        while True:
            line = self.rfile.readline(65537)
            if len(line) > 65536:
                self.send_error(431, "Line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, sep, value = line.decode("iso-8859-1").partition(":")
            if not sep or not name.strip():
                self.send_error(400, "Bad header line")
                return False
            key, value = name.strip().lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
            if len(headers) > MAX_HEADERS:
                self.send_error(431, "Too many headers")
                return False
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("connection", "").lower()
        self.close_connection = version != "HTTP/1.1" and connection != "keep-alive"
        if connection == "close":
            self.close_connection = True
        if headers.get("expect", "").lower() == "100-continue" and version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_OPTIONS(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        emulator = self.server.emulator
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._send(
                Response(
                    413,
                    dumps(
                        errors.ApiError(
                            413, "RequestEntityTooLarge", "request body too large"
                        ).status()
                    ),
                )
            )
            return
        path, _, raw_query = self.path.partition("?")
        method = self.command
        if path.startswith(CONTROL_PREFIX):
            self._send(emulator.control(method, path, body))
            return
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        watching = method == "GET" and query.get("watch") in ("true", "1")
        fault = emulator.controls.take_fault(method, path, watching)
        if fault is not None and fault.watch is not None:
            self._faulty_watch(
                fault, Request(method, path, query, dict(self.headers.items()), body)
            )
            return
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop:
                emulator.controls.record(method, path, query, 0)
                self._drop()
                return
            if fault.status is not None:
                reason = errors.REASON_BY_CODE.get(
                    fault.status, "InternalError" if fault.status >= 500 else "BadRequest"
                )
                err = errors.ApiError(fault.status, reason, f"injected fault: {method} {path}", {})
                if fault.retry_after is not None:
                    err.headers["Retry-After"] = str(fault.retry_after)
                emulator.controls.record(method, path, query, fault.status)
                self._send(error_response(err))
                return
        headers = dict(self.headers.items())
        req = Request(method, path, query, headers, body)
        resp = emulator.api.handle(req, alive=self._alive)
        emulator.controls.record(method, path, query, resp.status)
        if fault is not None and fault.lose_answer:
            self._drop()  # served, and the answer lost: the client cannot tell it landed
            return
        if resp.stream is not None:
            self._stream(resp)
        else:
            self._send(resp)

    def _head(self, resp: Response, framing: str) -> bytes:
        reason = self.responses.get(resp.status, ("",))[0]
        lines = [
            f"HTTP/1.1 {resp.status} {reason}",
            f"Date: {_http_date()}",
            f"Content-Type: {resp.content_type}",
            framing,
            "Cache-Control: no-cache, private",
        ]
        lines += [f"{k}: {v}" for k, v in resp.headers.items()]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")

    def _send(self, resp: Response) -> None:
        # status line, headers and body in one write: one segment for small answers
        head = self._head(resp, f"Content-Length: {len(resp.body)}")
        self.wfile.write(head if self.command == "HEAD" else head + resp.body)

    def _stream(self, resp: Response, *, delay: float = 0, limit: int | None = None) -> None:
        """Chunked events; `delay` holds each back (a lagging watch), `limit` stops after that
        many without the closing chunk (the caller then drops the connection)."""
        assert resp.stream is not None
        try:
            self.wfile.write(self._head(resp, "Transfer-Encoding: chunked"))
            self.wfile.flush()
            for sent, chunk in enumerate(resp.stream):
                if limit is not None and sent >= limit:
                    return
                if delay:
                    time.sleep(delay)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            if limit is not None:
                return
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _faulty_watch(self, fault: control.Fault, req: Request) -> None:
        emulator = self.server.emulator
        if fault.watch == "gone":
            gone = errors.gone("too old resource version: injected fault")
            event = dumps({"type": "ERROR", "object": gone.status()}) + b"\n"
            emulator.controls.record(req.method, req.path, req.query, 200)
            self._stream(Response(200, stream=iter([event])))
            return
        resp = emulator.api.handle(req, alive=self._alive)
        emulator.controls.record(req.method, req.path, req.query, resp.status)
        if resp.stream is None:
            self._send(resp)
            return
        if fault.watch == "delay":
            self._stream(resp, delay=fault.delay)
            return
        self._stream(resp, limit=fault.after)
        self._drop()

    def _alive(self) -> bool:
        """False once the client closed a watch: it never sends anything else mid-stream."""
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        if not readable:
            return True
        if isinstance(sock, ssl.SSLSocket):
            return False
        try:
            return bool(sock.recv(1, socket.MSG_PEEK) != b"")
        except OSError:
            return False

    def _drop(self) -> None:
        """Close the connection without answering (RST, so the client sees a reset)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], emulator: Emulator, tls: ssl.SSLContext | None = None
    ) -> None:
        self.emulator = emulator
        self.tls = tls
        super().__init__(address, Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's own thread: a slow TLS handshake blocks nobody else.
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hangs up mid-answer is normal traffic, not worth a traceback
        if isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError):
            return
        super().handle_error(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with contextlib.suppress(OSError):
            request.shutdown(socket.SHUT_WR)
        request.close()


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def kubeconfig(url: str, ca_pem: bytes | None) -> dict[str, Any]:
    cluster: dict[str, Any] = {"server": url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": cluster}],
        "users": [{"name": "emulator", "user": {"token": "emulator"}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "emulator", "namespace": "default"},
            }
        ],
        "current-context": "emulator",
        "preferences": {},
    }


def write_kubeconfig(path: str, url: str, ca_pem: bytes | None) -> None:
    # JSON is YAML: the kubernetes client's loader reads it, and we stay stdlib-only.
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(kubeconfig(url, ca_pem), fh, indent=2)
        fh.write("\n")


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    kubeconfig_path: str | None = None,
    tls: tuple[str, str] | None = None,
    ca_file: str | None = None,
    seed_name: str = "namespaces",
    service_addresses: dict[str, str] | None = None,
    ready: threading.Event | None = None,
) -> None:
    emulator = Emulator(seed_name=seed_name, service_addresses=service_addresses)
    context = tls_context(*tls) if tls else None
    server = EmulatorHTTPServer((host, port), emulator, context)
    bound = server.server_address[1]
    emulator.address = f"{host}:{bound}"
    url = f"{'https' if context else 'http'}://{host}:{bound}"
    if kubeconfig_path:
        ca_pem = None
        if tls:
            with open(ca_file or tls[0], "rb") as fh:
                ca_pem = fh.read()
        write_kubeconfig(kubeconfig_path, url, ca_pem)
    print(f"READY {url}", flush=True)
    if ready is not None:
        ready.set()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        emulator.api.closing = True
        server.server_close()
        sys.stdout.flush()
