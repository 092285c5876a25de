"""pytest fixtures for the Kubernetes API emulator.

- `kube_emulator` (session): one emulator subprocess for the whole run, killed at the end. The
  handle has `.url`, `.kubeconfig`, `.api_client()`, `.reset()`, `.requests()`,
  `.clear_requests()`, `.fault(method, path_pattern, *, status, delay, drop, times,
  retry_after, lose_answer)` and
  `.compact()`.
- `emulator` (function): the same handle after a reset (namespaces `default` and
  `cocoon-system` only) and with an empty request log.
- `--real-cluster`: the conformance suite's `real` backend is the cluster in `KUBECONFIG`
  instead of the control plane of tests/control_plane (see tests/conformance/conftest.py).

Other suites that need their own instance (TLS, `--service-address`) use
`tests.kube_emulator.launcher.EmulatorProcess.start(...)` directly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kube_emulator.launcher import EmulatorProcess


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--real-cluster",
        action="store_true",
        default=False,
        help="the conformance `real` backend: the cluster in KUBECONFIG, not tests/control_plane",
    )


@pytest.fixture(scope="session")
def kube_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    handle = EmulatorProcess.start(tmp_path_factory.mktemp("kube-emulator"), seed="namespaces")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def emulator(kube_emulator: EmulatorProcess) -> EmulatorProcess:
    kube_emulator.reset("namespaces")
    kube_emulator.clear_requests()
    return kube_emulator
