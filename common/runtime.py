"""Every function in one table, and the process-wide state they share, built once.

A row names a function: its handler (the metric label and functions-framework target), its
paths, its decision factory and its readiness. The functions/ modules, the standalone server
and the tests all read `FUNCTIONS`; adding a function is one row plus its decision module (and
the few lines in functions/ that functions-framework loads).

Function modules call `endpoint(...)` at import, so functions-framework loads the settings
when it loads the module: a bad value stops the revision before it can become Ready.
"""

from __future__ import annotations

import functools
import gc
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from common.admission import Decider, Endpoint, serve
from common.cache import ClusterCaches
from common.config import ConfigError, Settings, load_settings
from common.edge import Readiness
from common.endpoints import (
    cocoonset_decider,
    hibernation_decider,
    mutate_decider,
    validate_decider,
)
from common.health import all_ready, always_ready, reporting
from common.kube import ClientKubeApi, KubeApi
from common.logs import setup_logging, timestamp
from common.reap_target import serve_reap


class Handler(StrEnum):
    MUTATE = "mutate"
    VALIDATE = "validate"
    VALIDATE_COCOONSET = "validate_cocoonset"
    VALIDATE_COCOONHIBERNATION = "validate_cocoonhibernation"
    REAP = "reap"


class Process:
    """This process's settings, Kubernetes client and caches, each built on first use."""

    @functools.cached_property
    def settings(self) -> Settings:
        try:
            loaded = load_settings()
        except ConfigError as exc:
            # One line, not a traceback: this is what an operator reads in `kubectl logs`.
            line = {"time": timestamp(time.time()), "level": "fatal", "msg": str(exc)}
            print(json.dumps(line), flush=True)
            raise SystemExit(1) from None
        setup_logging(loaded.log_level)
        return loaded

    @functools.cached_property
    def kube(self) -> KubeApi:
        return ClientKubeApi(self.settings.kubeconfig)

    @functools.cached_property
    def caches(self) -> ClusterCaches:
        """Built here, started by their first user in the serving process (see ClusterCaches)."""
        return ClusterCaches(self.kube, self.settings.cache_silence_limit_s)

    @property
    def mutate_caches(self) -> ClusterCaches | None:
        return self.caches if self.settings.caches_enabled else None

    def stop(self) -> None:
        if "caches" in self.__dict__:
            self.caches.stop()  # its threads end with their current watch


@dataclass(frozen=True)
class Function:
    handler: Handler
    # Its own path; in function mode it answers on "/" too, the standalone server routes by it.
    path: str
    # What it decides; None for the reap target, which is not an admission function.
    decider: Callable[[Process], Decider] | None
    readiness: Callable[[Process], Readiness]


def _mutate_readiness(process: Process) -> Readiness:
    caches = process.mutate_caches
    reported = reporting(process.kube)
    return all_ready(reported, caches.readiness) if caches else reported


FUNCTIONS: Final = (
    Function(
        Handler.MUTATE,
        "/mutate",
        lambda p: mutate_decider(p.kube, p.settings, p.mutate_caches),
        _mutate_readiness,
    ),
    Function(
        Handler.VALIDATE,
        "/validate",
        lambda p: validate_decider(p.kube),
        lambda p: reporting(p.kube),
    ),
    Function(
        Handler.VALIDATE_COCOONSET,
        "/validate-cocoonset",
        lambda p: cocoonset_decider(),
        lambda p: always_ready,
    ),
    Function(
        Handler.VALIDATE_COCOONHIBERNATION,
        "/validate-cocoonhibernation",
        lambda p: hibernation_decider(p.kube),
        lambda p: reporting(p.kube),
    ),
    Function(Handler.REAP, "/", None, lambda p: reporting(p.kube)),
)
ADMISSION_FUNCTIONS: Final = tuple(row for row in FUNCTIONS if row.decider is not None)

_process = Process()


def process() -> Process:
    return _process


def reset() -> None:
    """Forget this process's state (tests that change the environment between functions)."""
    global _process
    _process.stop()
    _process = Process()


def row(handler: Handler) -> Function:
    return next(function for function in FUNCTIONS if function.handler is handler)


@functools.cache
def _freeze_startup_heap() -> None:
    # The kubernetes client and pydantic leave a large heap of long-lived objects behind at
    # import. Moving them out of the collector's sight keeps full collections, which a busy
    # admission path triggers, from scanning them again and again (tail latency under load).
    gc.collect()
    gc.freeze()


def endpoint(handler: Handler) -> Endpoint:
    function = row(handler)
    if function.decider is None:
        raise ValueError(f"{handler} is not an admission function")
    current = process()
    current.settings  # noqa: B018 - a bad setting stops the process here, at import
    _freeze_startup_heap()
    decider = function.decider(current)
    return Endpoint(
        handler=function.handler,
        paths=frozenset({"/", function.path}),
        decide=decider.decide,
        readiness=function.readiness(current),
        on_unexpected=decider.on_unexpected,
    )


def http_handler(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A function's whole HTTP surface in function mode, bound to this process."""
    if handler is Handler.REAP:
        current = process()
        loaded, client = current.settings, current.kube
        readiness = row(handler).readiness(current)

        async def reap(request: Request) -> Response:
            return await serve_reap(request, client, loaded, readiness)

        return reap
    bound = endpoint(handler)

    async def admit(request: Request) -> Response:
        return await serve(request, bound)

    return admit
