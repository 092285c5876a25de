"""Decoding of large AdmissionReview bodies (1 to 4 MiB) in a worker process, off the event loop.

json.loads and pydantic hold the GIL for the whole parse (about 0.3 s for an 8 MiB review, more
on a loaded 2-core machine), so a worker thread would stall the loop just the same: every small
review waits behind every large one. A worker process parses, checks depth and decodes the
envelope with the very `parse_review` of the inline path, so a verdict and a 400 line are the
same either way. The pool's own thread unpickles the result, which still holds the GIL, but
for a fraction of the parse's time (measured: a small review waited at most 26-35 ms beside
16 concurrent 4 MiB reviews, 82-222 ms with them parsed on the loop).

Used by every entry point, since all go through `common.admission.admit`: the standalone
server, whose byte budget (common.connections) bounds how many large bodies wait here, and the
functions, where Knative's containerConcurrency does.

The worker starts on the first large body of the process that serves (never at import, so
gunicorn's pre-fork master and the tests that never send one start nothing), with the
'forkserver' method: forking a process that already runs threads (the IO pool, the caches'
reflectors) can copy a held lock into the child. The fork server preloads the decoder and the
main module, so a worker starts without importing anything. Workers ignore SIGINT (a terminal's
Ctrl-C reaches the whole process group; the server stops them itself) and exit when the serving
process does, even when that one is killed outright; the fork server follows once they are gone.

If the pool cannot start or a worker dies, the body is parsed inline, as before this module:
a slower answer beats a 5xx or a hanging request for a review that is fine. A process forked
after its parent started a pool cannot reach the parent's fork server (multiprocessing's
is one per process tree and checked with waitpid), so it parses inline; nothing forks a
serving process today.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import select
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor

from common.logs import get_logger
from common.models import AdmissionRequest, EnvelopeError, parse_review

# Below this a body is parsed inline: about 40 ms of loop time at most, while the round trip
# to a worker (copy in, pickle out, a wake-up of the loop) costs more than the parse of the
# reviews the API server sends every day (a few KiB).
OFFLOAD_BODY_BYTES = 1024 * 1024
# Above this a body is parsed inline too, one at a time under the byte budget. A worker's parse
# takes about ten times the body's size on top of the decoded copy the loop unpickles, so large
# ones would take the pod past its 256 Mi limit (measured, 16 concurrent reviews: 8.5 MiB ones
# peaked at 271 MiB PSS with the worker, 133 MiB inline; 4 MiB ones at 207 MiB). The API
# server's reviews rarely come near it: an object and its old version, each stored within
# etcd's 1.5 MiB request limit.
OFFLOAD_MAX_BYTES = 4 * 1024 * 1024
# One per core of the pod's CPU limit is all that helps, and both installs limit it to 500m: a
# second worker would only hold memory. Large bodies queue for it, off the event loop; the byte
# budget (common.connections) bounds how many.
DECODE_WORKERS = 1
# Workers idle this long exit (the next large body forks new ones from the fork server in a
# few ms): after a parse each keeps about 30 MiB of the document's memory, and large bodies
# are rare; the API server's reviews are a few KiB.
WORKERS_IDLE_S = 30.0

_log = get_logger("offload")
_lock = threading.Lock()
_pool: Executor | None = None
_busy = 0  # large bodies in the pool or parsed inline after it failed (on the event loop)
_idle_stop: asyncio.TimerHandle | None = None


def _in_worker(server_pid: int) -> None:
    """A worker's setup: leave SIGINT to the server, and exit when the server is gone.

    Nothing else would end a worker whose server was killed: it waits on a queue it holds both
    ends of, and the fork server, its parent, waits for every process it served to exit first.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        server = os.pidfd_open(server_pid)  # Linux 5.3 and later
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):
        return
    threading.Thread(target=_exit_when_gone, args=(server,), daemon=True).start()


def _exit_when_gone(server: int) -> None:
    select.select([server], [], [])  # a pidfd turns readable when its process exits
    os._exit(0)


def _start_pool() -> Executor:
    context = multiprocessing.get_context("forkserver")
    # Every worker imports the main module (as __mp_main__, so its entry point does not run): a
    # script by its path, `python -m` by its name, which the fork server's '__main__' misses.
    # Imported once in the fork server, with the decoder, they are shared by the workers.
    main_module = getattr(sys.modules["__main__"].__spec__, "name", None)
    context.set_forkserver_preload(["__main__", *filter(None, [main_module]), "common.models"])
    return ProcessPoolExecutor(
        DECODE_WORKERS, mp_context=context, initializer=_in_worker, initargs=(os.getpid(),)
    )


# What a worker runs; a module global so a test can make it wait, crash or raise.
decode_in_worker: Callable[[bytes], AdmissionRequest] = parse_review


def _current_pool() -> Executor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = _start_pool()
        return _pool


def _discard(pool: Executor) -> None:
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def _forget_after_fork() -> None:
    # The parent's pool and lock are the parent's: its workers are not this process's children,
    # and another thread may have held the lock at the fork.
    global _lock, _pool, _busy, _idle_stop
    _lock, _pool, _busy, _idle_stop = threading.Lock(), None, 0, None


os.register_at_fork(after_in_child=_forget_after_fork)


def budget_bytes(size: int) -> int:
    """What a body of `size` bytes takes of the byte budget: twice its size when a worker parses
    it, which holds about as much memory again as the decoded review on the event loop (without
    this, 8.5 MiB reviews parsed inline beside 4 MiB ones in the worker peaked at 259 MiB PSS)."""
    return 2 * size if OFFLOAD_BODY_BYTES < size <= OFFLOAD_MAX_BYTES else size


async def parse(body: bytes) -> AdmissionRequest:
    """`parse_review(body)`, in a worker process when the body is large."""
    if not OFFLOAD_BODY_BYTES < len(body) <= OFFLOAD_MAX_BYTES:
        return parse_review(body)
    global _busy
    _busy += 1
    if _idle_stop is not None:
        _idle_stop.cancel()
    try:
        return await _parse_in_pool(body)
    finally:
        _busy -= 1
        if _busy == 0:
            _stop_when_idle()


def _stop_when_idle() -> None:
    global _idle_stop

    def stop() -> None:
        global _pool
        if _busy:
            return
        with _lock:
            pool, _pool = _pool, None
        if pool is not None:
            pool.shutdown(wait=False)  # idle workers exit at once; nothing waits for them

    _idle_stop = asyncio.get_running_loop().call_later(WORKERS_IDLE_S, stop)


async def _parse_in_pool(body: bytes) -> AdmissionRequest:
    pool: Executor | None = None
    try:
        pool = _current_pool()
        # Off the event loop: submit() forks a worker when none is idle, and the first one
        # starts the fork server, which imports the server's modules before it answers.
        future = await asyncio.to_thread(pool.submit, decode_in_worker, body)
        result: AdmissionRequest = await asyncio.wrap_future(future)
        return result
    except EnvelopeError:
        raise
    except Exception as exc:  # a dead worker or a pool that cannot start: parse here instead
        _log.warning(
            "decoding worker failed; parsing on the event loop",
            extra={"error": f"{type(exc).__name__}: {exc}"},
        )
        if pool is not None:
            _discard(pool)
        return parse_review(body)


def shutdown() -> None:
    """Stop the workers (a parse in progress is abandoned: its request is being dropped too)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
