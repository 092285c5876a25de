"""Readiness, and the Kubernetes API's health kept visible without gating readiness.

No function's `/readyz` depends on the API server. Readiness decides whether a replica stays
in its Service's endpoints; with the API slow or down every replica would fail the same probe,
and a webhook with no ready endpoint fails every call, which is worse than each answer:

- validate_cocoonset makes no API call at all;
- validate needs the API only for a `/scale` scale-down, which it denies while the parent cannot
  be read (`cannot verify parent workload`); every other review is answered right without it;
- validate_cocoonhibernation needs the API for every CREATE, which it denies while the LIST
  fails (`cannot verify podRef uniqueness`): the answer any replica would give;
- mutate fails open: with the API down it admits pods unpatched with a warning, at once, where
  an unready Service would make the API server wait for a connection error first;
- reap needs the API for a sweep, which then fails visibly in its reply and metrics.

So `/readyz` means "this process answers". The API's health goes to metrics and logs instead:
`cocoon_webhook_kube_api_last_success_age_seconds` (any call that got an answer from the API
server, admissions included) and `cocoon_webhook_kube_api_reachable` (the last probe), with
one log line when the API becomes unreachable and one when it is back. Probes are `GET /version`
started by `/readyz` itself when no call succeeded for `RECENT_SUCCESS_S`, in the background:
the kubelet's probe period paces them, and a busy replica never probes.

Readiness is one small async callable (`common.edge.Readiness`); `all_ready` composes
several (mutate's "caches synced once", `common.cache`; the server's "not shutting down").
The caches' check is the one exception to the rule above, and only until their first sync: a
replica with nothing cached yet would answer every admission from direct LISTs.
"""

from __future__ import annotations

import asyncio
import math
import time

from prometheus_client import Gauge

from common.edge import Readiness
from common.kube import KubeApi, KubeError
from common.logs import get_logger

RECENT_SUCCESS_S = 10.0
VERSION_PROBE_TIMEOUT_S = 1.0

READY = (True, "ready")

API_LAST_SUCCESS_AGE = Gauge(
    "cocoon_webhook_kube_api_last_success_age_seconds",
    "Seconds since a call to the Kubernetes API got an answer (+Inf: none yet).",
)
API_REACHABLE = Gauge(
    "cocoon_webhook_kube_api_reachable",
    "1 if the last GET /version probe of the Kubernetes API got an answer, else 0; NaN before it.",
)
API_REACHABLE.set(math.nan)

_log = get_logger("health")


class ApiWatch:
    """Keeps the API's health in metrics and logs; never blocks its caller."""

    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube
        self._probe: asyncio.Task[None] | None = None
        self._reachable: bool | None = None
        API_LAST_SUCCESS_AGE.set_function(self.age)

    def age(self) -> float:
        last = self._kube.last_success()
        return math.inf if last is None else max(time.monotonic() - last, 0.0)

    def refresh(self) -> None:
        """Start a probe unless the API answered recently or one is running."""
        if self.age() < RECENT_SUCCESS_S:
            return
        loop = asyncio.get_running_loop()
        probe = self._probe
        # A probe of a loop that is gone (a test client's) will never finish.
        if probe is not None and not probe.done() and probe.get_loop() is loop:
            return
        self._probe = loop.create_task(self._run_probe())

    async def _run_probe(self) -> None:
        try:
            await asyncio.to_thread(self._kube.server_version, VERSION_PROBE_TIMEOUT_S)
        except KubeError as exc:
            self._record(False, str(exc))
        else:
            self._record(True, "")

    def _record(self, reachable: bool, error: str) -> None:
        API_REACHABLE.set(1 if reachable else 0)
        if reachable == self._reachable:
            return
        if not reachable:
            _log.warning("kubernetes API unreachable", extra={"error": error})
        elif self._reachable is not None:
            _log.info("kubernetes API reachable again")
        self._reachable = reachable


# id(client) -> (client, its readiness): the client is kept so that its id is never reused.
_reporting: dict[int, tuple[KubeApi, Readiness]] = {}


def reporting(kube: KubeApi) -> Readiness:
    """Always ready; each probe keeps the API's health in metrics and logs up to date.

    One per client: the endpoints and the reaper of a process share its watch."""
    known = _reporting.get(id(kube))
    if known is not None:
        return known[1]
    watch = ApiWatch(kube)

    async def readiness() -> tuple[bool, str]:
        watch.refresh()
        return READY

    _reporting[id(kube)] = (kube, readiness)
    return readiness


async def always_ready() -> tuple[bool, str]:
    return READY


def all_ready(*checks: Readiness) -> Readiness:
    """Ready when every check is; the first that is not says why."""

    async def readiness() -> tuple[bool, str]:
        for check in checks:
            ready, line = await check()
            if not ready:
                return ready, line
        return READY

    return readiness
