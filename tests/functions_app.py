"""Load function targets exactly as production does: functions-framework's create_app."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from functions_framework import create_app
from starlette.testclient import TestClient

from common import config, runtime

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


def _forget_process_state() -> None:
    config.load_settings.cache_clear()
    runtime.settings.cache_clear()
    runtime.kube.cache_clear()
