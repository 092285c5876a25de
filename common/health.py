"""Readiness that means something: the Kubernetes API answered recently (SPEC section 3)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from common.kube import KubeApi, KubeError

RECENT_SUCCESS_S = 10.0
VERSION_PROBE_TIMEOUT_S = 1.0


async def api_readiness(kube: KubeApi) -> tuple[bool, str]:
    """Ready if any API call succeeded in the last 10 s, else whatever one GET /version says.

    Cheap under frequent probes: a busy replica answers from its last success without I/O.
    """
    last = kube.last_success()
    if last is not None and time.monotonic() - last < RECENT_SUCCESS_S:
        return True, "ready"
    try:
        await asyncio.to_thread(kube.server_version, VERSION_PROBE_TIMEOUT_S)
    except KubeError as exc:
        return False, f"not ready: kubernetes API unreachable ({exc})"
    return True, "ready"


def tracking(kube: KubeApi) -> Callable[[], Awaitable[tuple[bool, str]]]:
    """The readiness of an endpoint that needs the API: `api_readiness` bound to its client."""

    async def readiness() -> tuple[bool, str]:
        return await api_readiness(kube)

    return readiness


async def always_ready() -> tuple[bool, str]:
    return True, "ready"
