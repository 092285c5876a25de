"""pytest fixtures for the real control plane (etcd, kube-apiserver, kube-controller-manager).

- `control_plane` (session): one control plane for the whole run, built on first use (cached
  per machine, see build.py) and stopped at the end. The handle has `.url`, `.kubeconfig`,
  `.workdir` (`ca.crt` there is the cluster CA), `.api_client()` (admin), `.metrics_text()`.
- `@pytest.mark.control_plane`: a test needing the binaries without the fixture. Tests using
  the fixture are marked automatically.
- When the binaries are neither cached nor buildable (`go` missing), the marked tests are left
  out with one summary line naming what is missing; under `CI=true` they run and fail instead.
- `unavailable(reason)`: the same choice inside a test (skip outside CI, fail under CI=true).

A control plane that starts but does not become ready fails the tests that use it, with the last
lines of its logs; its processes are stopped first.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.control_plane import build
from tests.control_plane.launcher import ControlPlane

_MISSING = pytest.StashKey[tuple[int, str]]()


def unavailable(reason: str) -> NoReturn:
    if build.in_ci():
        pytest.fail(f"{reason} (CI=true: the control plane is required)", pytrace=False)
    pytest.skip(reason.splitlines()[0])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "control_plane: needs the real control plane's binaries")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if build.in_ci() or build.cached() is not None or shutil.which("go") is not None:
        return
    if config.getoption("--real-cluster", default=False):
        return  # the conformance suite's `real` backend is KUBECONFIG's cluster
    needing = [
        item
        for item in items
        if "control_plane" in getattr(item, "fixturenames", ())
        or item.get_closest_marker("control_plane")
    ]
    if needing:
        items[:] = [item for item in items if item not in set(needing)]
        config.hook.pytest_deselected(items=needing)
        config.stash[_MISSING] = (len(needing), "`go` not on PATH")


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if missing := config.stash.get(_MISSING, None):
        count, what = missing
        terminalreporter.write_line(
            f"SKIPPED {count} tests of the real control plane: {what} "
            "(needed to build kube-apiserver and etcd; CI=true makes this a failure)"
        )


@contextlib.contextmanager
def running(workdir: Path, **options: Any) -> Iterator[ControlPlane]:
    """A control plane of a test's own (`options` as ControlPlane.start's), stopped on exit;
    unavailable binaries skip the test outside CI."""
    try:
        plane = ControlPlane.start(workdir, **options)
    except build.ControlPlaneUnavailable as exc:
        unavailable(str(exc))
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running(tmp_path_factory.mktemp("control-plane")) as plane:
        yield plane
