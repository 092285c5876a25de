"""The retry policy (pure), the Retrier that applies it, and the adapter's part: a 429 or 503
reaches the caller as itself, with its Retry-After, rather than being retried by urllib3."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bench.loadgen import free_port
from common.decisions.retry import (
    LEAST_TIME_FOR_RETRY_S,
    LONGEST_WAIT_S,
    SHORTEST_ATTEMPT_S,
    attempt_timeout,
    is_transient,
    retry_wait,
)
from common.kube import ClientKubeApi, Conflict, KubeError, NotFound, Unreachable
from common.retry import DeadlineExceeded, Retrier, Tries
from tests.helpers import kubeconfig_for


@pytest.mark.parametrize(
    ("status", "transient"),
    [(None, True), (429, True), (500, True), (502, True), (503, True), (504, True),
     (400, False), (401, False), (403, False), (404, False), (409, False), (410, False),
     (422, False)],
)  # fmt: skip
def test_what_is_transient(status: int | None, transient: bool) -> None:
    assert is_transient(status) is transient


def test_waits_grow_are_jittered_and_capped() -> None:
    lows = [retry_wait(n, None, 100, 0.0) for n in range(1, 8)]
    highs = [retry_wait(n, None, 100, 0.999999) for n in range(1, 8)]
    assert lows == pytest.approx([0.025, 0.05, 0.1, 0.2, 0.25, 0.25, 0.25])
    assert highs == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5], abs=1e-5)
    assert max(highs) <= LONGEST_WAIT_S  # type: ignore[type-var]


def test_retry_after_is_honoured_when_it_fits() -> None:
    assert retry_wait(1, 1.0, 3.0, 0.5) == 1.0
    # It does not fit: the usual short wait instead, the deadline still bounding the retries.
    assert retry_wait(1, 5.0, 3.0, 0.0) == pytest.approx(0.025)
    # A Retry-After shorter than the backoff does not make us hurry.
    assert retry_wait(4, 0.0, 3.0, 0.0) == pytest.approx(0.2)


def test_no_retry_without_time_for_it() -> None:
    assert retry_wait(1, None, LEAST_TIME_FOR_RETRY_S, 0.0) is None
    assert retry_wait(1, None, 0.05 + LEAST_TIME_FOR_RETRY_S - 0.001, 0.999) is None
    assert retry_wait(1, None, 0.05 + LEAST_TIME_FOR_RETRY_S + 0.001, 0.999) is not None


@pytest.mark.parametrize(
    ("left", "longest", "timeout"),
    [(3.0, float("inf"), 2.0), (1.2, float("inf"), SHORTEST_ATTEMPT_S),
     (0.3, float("inf"), 0.3), (200.0, 30.0, 30.0), (4.0, 2.0, 2.0), (2.5, 2.0, 1.5),
     (1.0, 0.2, 0.2)],
)  # fmt: skip
def test_attempt_timeouts_leave_room_for_a_retry(
    left: float, longest: float, timeout: float
) -> None:
    assert attempt_timeout(left, longest) == pytest.approx(timeout)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def attempts(*outcomes: Any) -> tuple[Callable[[float], str], list[float]]:
    """An attempt that raises or returns the outcomes in turn, recording its timeouts."""
    timeouts: list[float] = []
    queue = list(outcomes)

    def attempt(timeout: float) -> str:
        timeouts.append(timeout)
        outcome = queue.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    return attempt, timeouts


def retrier(clock: Clock) -> Retrier:
    return Retrier("test", monotonic=clock.monotonic, sleep=clock.sleep, jitter=lambda: 0.5)


def retries(cause: str) -> float:
    labels = {"component": "test", "cause": cause}
    return REGISTRY.get_sample_value("cocoon_webhook_api_retries_total", labels) or 0.0


def test_transient_failures_are_retried_until_success() -> None:
    clock = Clock()
    attempt, timeouts = attempts(Unreachable("reset"), KubeError("x", 503), "ok")
    before = retries("no_answer"), retries("503")
    budget = Tries(clock.t + 3, 5)
    assert retrier(clock).call(budget, attempt) == "ok"
    assert len(timeouts) == 3 and budget.spent == 2
    assert clock.slept == pytest.approx([0.0375, 0.075])
    assert (retries("no_answer"), retries("503")) == (before[0] + 1, before[1] + 1)


def test_a_retry_after_that_fits_is_waited_out() -> None:
    clock = Clock()
    attempt, _ = attempts(KubeError("busy", 429, "TooManyRequests", retry_after=1.0), "ok")
    assert retrier(clock).call(Tries(clock.t + 3, 5), attempt) == "ok"
    assert clock.slept == [1.0]


@pytest.mark.parametrize(
    "final", [NotFound("gone", 404), Conflict("moved", 409), KubeError("no", 403)]
)
def test_final_answers_go_straight_to_the_caller(final: KubeError) -> None:
    clock = Clock()
    attempt, timeouts = attempts(final, "never")
    with pytest.raises(type(final)):
        retrier(clock).call(Tries(clock.t + 3, 5), attempt)
    assert len(timeouts) == 1 and clock.slept == []


def test_the_budget_bounds_the_tries() -> None:
    clock = Clock()
    attempt, timeouts = attempts(*[KubeError("x", 500)] * 10)
    with pytest.raises(KubeError):
        retrier(clock).call(Tries(clock.t + 60, 2), attempt)
    assert len(timeouts) == 3


def test_the_deadline_bounds_the_tries() -> None:
    clock = Clock()

    def hangs(timeout: float) -> str:
        clock.t += timeout
        raise Unreachable(f"timeout after {timeout:g}s")

    with pytest.raises(Unreachable):
        retrier(clock).call(Tries(clock.t + 3, 100), hangs)
    assert clock.t <= 103
    with pytest.raises(DeadlineExceeded):
        retrier(clock).call(Tries(clock.t - 1, 100), hangs)


def test_the_client_hands_429_and_retry_after_to_the_caller(emulator: Any) -> None:
    # urllib3 would otherwise repeat (or, with its retries spent, mask) an answer that carries
    # Retry-After, past the caller's deadline.
    kube = ClientKubeApi(emulator.kubeconfig)
    path = "/api/v1/namespaces/cocoon-system/configmaps/*"
    emulator.fault("GET", path, status=429, retry_after=2)
    with pytest.raises(KubeError) as throttled:
        kube.get_configmap("cocoon-system", "x", 5)
    assert (throttled.value.status, throttled.value.retry_after) == (429, 2.0)
    emulator.fault("GET", path, status=503, retry_after=0)
    with pytest.raises(KubeError) as unavailable:
        kube.get_configmap("cocoon-system", "x", 5)
    assert (unavailable.value.status, unavailable.value.retry_after) == (503, 0.0)
    emulator.fault("GET", path, status=500)
    with pytest.raises(KubeError) as failed:
        kube.get_configmap("cocoon-system", "x", 5)
    assert (failed.value.status, failed.value.retry_after) == (500, None)
    assert [r["status"] for r in emulator.requests()] == [429, 503, 500]


@pytest.mark.parametrize(
    ("server", "reason"),
    [
        pytest.param("refused", "[Errno 111] Connection refused", id="refused"),
        pytest.param(
            "https://no-such-host.invalid", "Failed to resolve 'no-such-host.invalid'", id="dns"
        ),
    ],
)
def test_a_server_that_cannot_be_reached_is_not_called_a_timeout(
    tmp_path: Any, server: str, reason: str
) -> None:
    # urllib3's NewConnectionError is a subclass of its TimeoutError: the message said
    # "timeout after 2s" for a server that refused at once, in denials, warnings and the plugin.
    if server == "refused":
        server = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    kube = ClientKubeApi(kubeconfig_for(tmp_path / "config", server))
    with pytest.raises(Unreachable) as failed:
        kube.get_configmap("cocoon-system", "x", 2)
    message = str(failed.value)
    assert message.startswith(f"get configmaps cocoon-system/x: cannot connect: {reason}")
    assert "timeout" not in message and "HTTPSConnection" not in message
    assert "\n" not in message
