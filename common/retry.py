"""The one place that retries transient API failures (the policy is `decisions.retry`).

A caller hands `Retrier.call` one attempt (a function of its timeout) and a `Budget`: the time
it may spend and a count of tries that its other retries (conflict rounds) draw from too. Each
failure the policy calls transient is retried after a short jittered wait while the budget
allows; anything else, or the last transient failure, goes to the caller unchanged.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from common import metrics
from common.decisions.retry import attempt_timeout, is_transient, retry_wait
from common.kube import KubeError
from common.logs import get_logger

T = TypeVar("T")

_log = get_logger("retry")


class DeadlineExceeded(Exception):
    pass


class Budget(Protocol):
    @property
    def deadline(self) -> float:
        """time.monotonic() by which the work must be done."""
        ...

    def spend(self) -> bool:
        """Count one more try; False when none is left."""
        ...


@dataclass
class Tries:
    """A plain budget: a deadline and at most `limit` retries; `spent` counts those taken."""

    deadline: float
    limit: int
    spent: int = 0

    def spend(self) -> bool:
        if self.spent >= self.limit:
            return False
        self.spent += 1
        return True


def cause(exc: KubeError) -> str:
    """The `cause` label of cocoon_webhook_api_retries_total."""
    return "no_answer" if exc.status is None else str(exc.status)


class Retrier:
    def __init__(
        self,
        component: str,
        *,
        longest_attempt: float = math.inf,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._component = component
        self._longest_attempt = longest_attempt
        self._monotonic = monotonic
        self._sleep = sleep
        self._jitter = jitter

    def call(self, budget: Budget, attempt: Callable[[float], T]) -> T:
        """`attempt(timeout)` until it succeeds, fails for good, or the budget is spent.
        Raises DeadlineExceeded when the deadline passed before the first attempt."""
        retry = 0
        while True:
            left = budget.deadline - self._monotonic()
            if left <= 0:
                raise DeadlineExceeded
            try:
                return attempt(attempt_timeout(left, self._longest_attempt))
            except KubeError as exc:
                if not is_transient(exc.status):
                    raise
                retry += 1
                left = budget.deadline - self._monotonic()
                wait = retry_wait(retry, exc.retry_after, left, self._jitter())
                if wait is None or not budget.spend():
                    raise
                metrics.API_RETRIES_TOTAL.labels(component=self._component, cause=cause(exc)).inc()
                _log.debug(
                    "transient API error; retrying",
                    extra={"error": str(exc), "retry": retry, "waitMs": round(wait * 1000)},
                )
                self._sleep(wait)
