"""`python -m tests.kube_emulator --port 0 --kubeconfig PATH [--tls CERT KEY] [--seed NAME]
[--service-address ns/name=host:port ...]`: print `READY <url>`, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from types import FrameType

from tests.kube_emulator import seed, server


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.kube_emulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback by default)")
    p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one")
    p.add_argument("--kubeconfig", help="write a kubeconfig for the emulator to this path")
    p.add_argument(
        "--tls", nargs=2, metavar=("CERT", "KEY"), help="serve HTTPS with this certificate"
    )
    p.add_argument("--tls-ca", metavar="CA", help="CA bundle the kubeconfig trusts (default: CERT)")
    p.add_argument(
        "--seed", default="namespaces", choices=seed.SEEDS, help="starting state and reset target"
    )
    p.add_argument(
        "--service-address",
        action="append",
        default=[],
        metavar="NS/NAME=HOST:PORT",
        help="where a webhook clientConfig.service is served (repeatable)",
    )
    p.add_argument(
        "--exit-with-stdin",
        action="store_true",
        help="exit when stdin reaches EOF (a launcher's pipe: no orphan when the parent dies)",
    )
    args = p.parse_args(argv)
    services: dict[str, str] = {}
    for item in args.service_address:
        key, sep, address = item.partition("=")
        if not sep or "/" not in key or ":" not in address:
            p.error(f"--service-address wants ns/name=host:port, got {item!r}")
        services[key] = address
    args.services = services
    return args


def _exit_at_eof() -> None:
    while sys.stdin.buffer.read(4096):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if args.exit_with_stdin:
        threading.Thread(target=_exit_at_eof, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve(
            host=args.host,
            port=args.port,
            kubeconfig_path=args.kubeconfig,
            tls=tuple(args.tls) if args.tls else None,
            ca_file=args.tls_ca,
            seed_name=args.seed,
            service_addresses=args.services,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
