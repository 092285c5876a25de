"""Decoding of large AdmissionReview bodies in worker processes, off the event loop.

json.loads and pydantic hold the GIL for the whole parse (about 0.6 s for an 8 MiB review on
a loaded 2-core machine), so a worker thread would stall the loop just the same: every small
review waits behind every large one. A worker process parses, checks depth and decodes the
envelope; the loop only unpickles the result, about a tenth of the parse's time.

The pool starts on the first large body of the process that serves (never at import, so
gunicorn's pre-fork master and the tests that never send one start nothing), with the
'forkserver' method: forking a process that already runs threads (the IO pool, the reaper)
can copy a held lock into the child. If the pool cannot start or a worker dies, the body is
parsed inline, as before this module: a slower answer beats a 5xx for a review that is fine.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor

from common.logs import get_logger
from common.models import AdmissionRequest, EnvelopeError, parse_review

# Below this a body is parsed inline: about 70 ms of loop time at most, while the round trip
# to a worker (copy in, pickle out, a wake-up of the loop) costs more than the parse of the
# reviews the API server sends every day (a few KiB).
OFFLOAD_BODY_BYTES = 1024 * 1024
# One per core of the pod's CPU limit is all that helps; two keeps one large review from
# queueing behind another while the byte budget (common.connections) bounds the rest.
DECODE_WORKERS = 2

_log = get_logger("offload")
_lock = threading.Lock()
_pool: Executor | None = None


def _start_pool() -> Executor:
    context = multiprocessing.get_context("forkserver")
    return ProcessPoolExecutor(DECODE_WORKERS, mp_context=context)


# What a worker runs; a module global so a test can make it wait on an event.
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


async def parse(body: bytes) -> AdmissionRequest:
    """`parse_review(body)`, in a worker process when the body is large."""
    if len(body) <= OFFLOAD_BODY_BYTES:
        return parse_review(body)
    pool: Executor | None = None
    try:
        pool = _current_pool()
        result: AdmissionRequest = await asyncio.get_running_loop().run_in_executor(
            pool, decode_in_worker, body
        )
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
