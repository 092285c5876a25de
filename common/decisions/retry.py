"""Which API failures are worth another try, and how long to wait first: pure, no I/O.

Transient: no answer at all (timeout, reset, refused), 429 Too Many Requests and any 5xx. The
API server meant nothing final by them, and every write this project makes is guarded by a
resourceVersion, so repeating one is safe: if the first attempt landed after all, the repeat
gets a 409 and the caller re-reads. Everything else (403, 404, 409, 422, ...) is an answer,
and repeating the question would only get it again.
"""

from __future__ import annotations

# Waits grow 50, 100, 200, 400 ms, then stay at 500 ms; each is jittered down to half, so
# replicas that failed together do not come back together.
FIRST_WAIT_S = 0.05
LONGEST_WAIT_S = 0.5
# An attempt gets the time left but this much, so one that hangs leaves room for another; a
# share would cut off a slow but healthy API server (1.5 s answers under load are real) ...
KEPT_FOR_RETRY_S = 1.0
# ... and never less than this, time permitting ...
SHORTEST_ATTEMPT_S = 0.5
# ... and a retry is only worth starting with at least this much time left for it.
LEAST_TIME_FOR_RETRY_S = 0.1


def is_transient(status: int | None) -> bool:
    """`status` None: the call got no HTTP answer."""
    return status is None or status == 429 or status >= 500


def attempt_timeout(left: float, longest: float) -> float:
    """The timeout of the next attempt with `left` seconds of budget, at most `longest`."""
    return min(max(left - KEPT_FOR_RETRY_S, min(left, SHORTEST_ATTEMPT_S)), longest)


def retry_wait(retry: int, retry_after: float | None, left: float, jitter: float) -> float | None:
    """Seconds to wait before retry number `retry` (1 for the first), or None when it does not
    fit in `left`. `jitter` is uniform in [0, 1). The server's Retry-After is honoured when it
    fits; when it does not, the usual short wait is taken instead: a pod's identity is worth
    one more request to a busy server, and the caller's deadline bounds them anyway."""
    step = min(FIRST_WAIT_S * 2.0 ** (retry - 1), LONGEST_WAIT_S)
    wait = step * (0.5 + jitter / 2)
    if retry_after is not None and retry_after + LEAST_TIME_FOR_RETRY_S <= left:
        wait = max(wait, retry_after)
    if wait + LEAST_TIME_FOR_RETRY_S > left:
        return None
    return wait
