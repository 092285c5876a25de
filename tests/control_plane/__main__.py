"""`python -m tests.control_plane --kubeconfig PATH [--timeout S]`: build (cached) and start etcd,
kube-apiserver and kube-controller-manager on loopback, write an admin kubeconfig to PATH, print
`READY <url>`, serve until SIGTERM/SIGINT, then stop them all. Data lives in a temporary
directory removed on exit (`--workdir` keeps it)."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from tests.control_plane.build import ControlPlaneUnavailable
from tests.control_plane.launcher import ControlPlane, ControlPlaneFailed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.control_plane", description=__doc__)
    p.add_argument("--kubeconfig", required=True, help="write the admin kubeconfig to this path")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for readiness")
    p.add_argument("--workdir", type=Path, help="keep certificates, data and logs here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGTERM acts as Ctrl-C, also during the start: start() stops what it started, then re-raises.
    signal.signal(signal.SIGTERM, interrupt)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="control-plane-"))
    plane = None
    try:
        plane = ControlPlane.start(workdir, timeout=args.timeout)
        shutil.copyfile(plane.kubeconfig, args.kubeconfig)
        Path(args.kubeconfig).chmod(0o600)
        print(f"READY {plane.url}", flush=True)
        while True:
            signal.pause()
    except (ControlPlaneUnavailable, ControlPlaneFailed) as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        # A second signal must not cut the stop short and leave processes behind.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if plane is not None:
            plane.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
