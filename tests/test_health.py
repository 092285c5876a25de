"""Readiness never depends on the API; the API's health shows in metrics and logs instead."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterator

import pytest

from common import health
from common.kube import Unreachable
from common.logs import get_logger
from tests.fakes import FakeKube


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[tuple[str, str]]:
        return [(r.levelname, r.getMessage()) for r in self.records]


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = get_logger("health")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def sample(gauge: object) -> float:
    value: float = gauge._value.get()  # type: ignore[attr-defined]
    return value


async def probe_once(watch: health.ApiWatch) -> None:
    watch.refresh()
    probe = watch._probe
    if probe is not None:
        await probe


def test_a_recent_answer_means_no_probe() -> None:
    kube = FakeKube()
    kube._last_success = time.monotonic()
    watch = health.ApiWatch(kube)
    asyncio.run(probe_once(watch))
    assert kube.calls == []
    assert health.API_LAST_SUCCESS_AGE.collect()[0].samples[0].value < health.RECENT_SUCCESS_S


def test_outage_and_recovery_are_logged_once_each(records: Records) -> None:
    kube = FakeKube()
    kube.script["server_version"] = [Unreachable("get version: connection refused")] * 2
    watch = health.ApiWatch(kube)
    assert math.isinf(watch.age())

    async def scenario() -> list[float]:
        seen = []
        for _ in range(3):  # down, still down, back
            await probe_once(watch)
            seen.append(sample(health.API_REACHABLE))
        return seen

    assert asyncio.run(scenario()) == [0, 0, 1]
    assert kube.calls == ["server_version"] * 3
    assert records.messages() == [
        ("WARNING", "kubernetes API unreachable"),
        ("INFO", "kubernetes API reachable again"),
    ]
    assert records.records[0].error == "get version: connection refused"  # type: ignore[attr-defined]
    assert watch.age() < health.RECENT_SUCCESS_S


def test_readiness_answers_at_once_while_the_api_hangs() -> None:
    kube = FakeKube()
    release = asyncio.Event()
    hung: list[float] = []

    def hang() -> None:
        hung.append(time.monotonic())
        while not release.is_set():
            time.sleep(0.01)

    kube.script["server_version"] = [hang]

    async def scenario() -> tuple[bool, str]:
        readiness = health.reporting(kube)
        answer = await asyncio.wait_for(readiness(), timeout=5)
        # A second probe while the first hangs starts nothing new.
        await asyncio.wait_for(readiness(), timeout=5)
        while not hung:
            await asyncio.sleep(0.01)
        release.set()
        return answer

    assert asyncio.run(scenario()) == (True, "ready")
    assert kube.calls == ["server_version"]


def test_all_ready_reports_the_first_failing_check() -> None:
    async def down() -> tuple[bool, str]:
        return False, "not ready: shutting down"

    async def never() -> tuple[bool, str]:
        raise AssertionError("checked after a failing check")

    assert asyncio.run(health.all_ready(health.always_ready, health.always_ready)()) == (
        True,
        "ready",
    )
    assert asyncio.run(health.all_ready(health.always_ready, down, never)()) == (
        False,
        "not ready: shutting down",
    )


@pytest.mark.parametrize(
    ("idle_s", "probes"),
    [(health.RECENT_SUCCESS_S - 1, []), (health.RECENT_SUCCESS_S + 1, ["server_version"])],
    ids=["inside-the-window", "past-the-window"],
)
def test_the_recent_success_window(idle_s: float, probes: list[str]) -> None:
    """An answer less than RECENT_SUCCESS_S (10 s) old spares the probe; an older one does not."""
    kube = FakeKube()
    kube._last_success = time.monotonic() - idle_s
    asyncio.run(probe_once(health.ApiWatch(kube)))
    assert kube.calls == probes


def test_the_window_is_ten_seconds() -> None:
    assert health.RECENT_SUCCESS_S == 10.0  # the figure docs/operations.md gives
