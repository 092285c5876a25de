"""A round-robin TCP front for several webhook servers, as a ClusterIP Service is.

kube-proxy balances a Service per connection and passes TLS through untouched; this does the
same on 127.0.0.1, so the API server's webhook client verifies each replica's own certificate
and spreads its connections over every replica. Three webhook configurations, one per server,
would not be equivalent: the API server would call all three for every pod.

Test-only and small on purpose: one asyncio loop in a thread, a byte pump per direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import Counter
from collections.abc import Sequence

CHUNK = 64 * 1024


class RoundRobinProxy:
    """Listens on 127.0.0.1:<port>; each accepted connection goes to the next backend port.

    `backends` may be replaced at any time (replicas restarted on new ports); with none, a
    connection is closed at once, as a Service without endpoints refuses it.
    """

    def __init__(self, backends: Sequence[int] = ()) -> None:
        self.backends = list(backends)
        self._turn = itertools.count()
        self.connections: Counter[int] = Counter()  # backend port → connections sent to it
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rr-proxy", daemon=True)

    def start(self) -> RoundRobinProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("round-robin proxy did not start")
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> RoundRobinProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            pending = list(self._tasks)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(
                asyncio.gather(*pending, self._server.wait_closed(), return_exceptions=True)
            )
            self._loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        backends = self.backends
        try:
            if not backends:
                return
            backend = backends[next(self._turn) % len(backends)]
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    "127.0.0.1", backend
                )
            except OSError:
                return  # the replica is down: the client sees its connection closed
            self.connections[backend] += 1
            try:
                await asyncio.gather(_pump(reader, upstream_writer), _pump(upstream_reader, writer))
            finally:
                upstream_writer.close()
        finally:
            writer.close()
            self._tasks.discard(task)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await source.read(CHUNK):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
