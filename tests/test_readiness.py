"""`/readyz` of the functions that need the API: a recent success answers without I/O, an older
one (or none) sends one GET /version (SPEC section 3)."""

from __future__ import annotations

import asyncio
import time

from common.health import RECENT_SUCCESS_S, api_readiness
from common.kube import KubeError
from tests.fakes import FakeKube


def readiness_after(idle_s: float | None, kube: FakeKube) -> tuple[bool, str]:
    """The readiness answer when the last API success was `idle_s` ago (None: never)."""
    kube._last_success = None if idle_s is None else time.monotonic() - idle_s
    return asyncio.run(api_readiness(kube))


def test_the_window_is_ten_seconds() -> None:
    assert RECENT_SUCCESS_S == 10.0  # the README and the readiness probe's period rely on it


def test_a_success_inside_the_window_answers_without_asking_the_api() -> None:
    kube = FakeKube()
    kube.script["server_version"] = [KubeError("unreachable")]
    assert readiness_after(RECENT_SUCCESS_S - 1, kube) == (True, "ready")
    assert kube.calls == []


def test_a_success_older_than_the_window_asks_the_api_once() -> None:
    kube = FakeKube()
    assert readiness_after(RECENT_SUCCESS_S + 1, kube) == (True, "ready")
    assert kube.calls == ["server_version"]


def test_an_old_success_and_an_unreachable_api_is_not_ready() -> None:
    kube = FakeKube()
    kube.script["server_version"] = [KubeError("connection refused")]
    assert readiness_after(RECENT_SUCCESS_S + 1, kube) == (
        False,
        "not ready: kubernetes API unreachable (connection refused)",
    )
    assert kube.calls == ["server_version"]


def test_no_success_yet_asks_the_api() -> None:
    kube = FakeKube()
    kube.script["server_version"] = [KubeError("connection refused")]
    ready, reason = readiness_after(None, kube)
    assert not ready
    assert reason.startswith("not ready: kubernetes API unreachable")
