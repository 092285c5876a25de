"""Load function targets exactly as production does: functions-framework's create_app."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from functions_framework import create_app
from starlette.testclient import TestClient

from common import runtime

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def function_client(target: str, **env: str) -> Iterator[TestClient]:
    """A test client for functions/<target>.py with `env` applied while the module loads.

    The runtime caches settings and the Kubernetes client per process, as production does;
    tests that change the environment start from a clean cache and leave one behind.
    """
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    _forget_process_state()
    try:
        app = create_app(target, str(ROOT / "functions" / f"{target}.py"))
        with TestClient(app) as client:
            yield client
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _forget_process_state()


def wait_ready(client: TestClient, timeout: float = 30) -> None:
    """Poll /readyz as the kubelet would, until the function says it is ready (for mutate:
    its caches synced)."""
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready after {timeout}s: {client.get('/readyz').text}")
        time.sleep(0.02)


def api_requests(emulator: Any) -> list[tuple[str, str]]:
    """The emulator's request log without the caches' watches, which end on their own clock."""
    return sorted(
        (r["method"], r["path"]) for r in emulator.requests() if r["query"].get("watch") != "true"
    )


def _forget_process_state() -> None:
    runtime.reset()
