"""Process-wide wiring: settings, logging and the lazy Kubernetes client, built once.

Function modules call `endpoint(...)` at import, so functions-framework loads the settings
when it loads the module: a bad value stops the revision before it can become Ready.
"""

from __future__ import annotations

import functools
import gc
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from common.admission import Endpoint
from common.cache import ClusterCaches
from common.config import ConfigError, Settings, load_settings
from common.endpoints import (
    cocoonset_endpoint,
    hibernation_endpoint,
    mutate_endpoint,
    validate_endpoint,
)
from common.kube import ClientKubeApi, KubeApi
from common.logs import setup_logging
from common.reap_target import serve_reap


@functools.cache
def settings() -> Settings:
    try:
        loaded = load_settings()
    except ConfigError as exc:
        # One line, not a traceback: this is what an operator reads in `kubectl logs`.
        line = {"time": datetime.now(UTC).isoformat(), "level": "fatal", "msg": str(exc)}
        print(json.dumps(line), flush=True)
        raise SystemExit(1) from None
    setup_logging(loaded.log_level)
    return loaded


@functools.cache
def kube() -> KubeApi:
    return ClientKubeApi(settings().kubeconfig)


@functools.cache
def caches() -> ClusterCaches:
    """Built here, started by their first user in the serving process (see ClusterCaches)."""
    return ClusterCaches(kube(), settings().cache_silence_limit_s)


@functools.cache
def _freeze_startup_heap() -> None:
    # The kubernetes client and pydantic leave a large heap of long-lived objects behind at
    # import. Moving them out of the collector's sight keeps full collections, which a busy
    # admission path triggers, from scanning them again and again (tail latency under load).
    gc.collect()
    gc.freeze()


def endpoint(handler: str) -> Endpoint:
    settings()
    _freeze_startup_heap()
    if handler == "validate":
        return validate_endpoint(kube())
    if handler == "mutate":
        return mutate_endpoint(kube(), settings(), caches() if settings().caches_enabled else None)
    if handler == "validate_cocoonset":
        return cocoonset_endpoint()
    if handler == "validate_cocoonhibernation":
        return hibernation_endpoint(kube())
    raise ValueError(f"unknown handler {handler!r}")


def reap_handler() -> Callable[[Request], Awaitable[Response]]:
    """The reap target's request handler, bound to this process's settings and client."""
    loaded, client = settings(), kube()

    async def handle(request: Request) -> Response:
        return await serve_reap(request, client, loaded)

    return handle
