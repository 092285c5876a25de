"""Where one admission's time goes in-process: the function as functions-framework serves it,
driven through ASGI directly (no sockets), under cProfile.

    .venv/bin/python bench/profile_admission.py [validate|validate_cocoonset|mutate] [-n 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.admission_bench import _offline_kubeconfig, bodies
from tests.functions_app import ROOT

PATHS = {"validate": "/validate", "validate_cocoonset": "/validate-cocoonset", "mutate": "/mutate"}


async def drive(app: Any, path: str, body: bytes, count: int) -> None:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"x"), (b"content-type", b"application/json"),
                                     (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8080),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message

    for _ in range(count):
        await app(dict(scope), receive, send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", default="validate", choices=sorted(PATHS))
    parser.add_argument("-n", type=int, default=5000)
    args = parser.parse_args()
    os.environ.setdefault("KUBECONFIG", str(_offline_kubeconfig()))
    from functions_framework import create_app

    app = create_app(args.target, str(ROOT / "functions" / f"{args.target}.py"))
    body = bodies()[args.target]
    path = PATHS[args.target]
    asyncio.run(drive(app, path, body, 200))  # warm-up
    started = time.perf_counter()
    asyncio.run(drive(app, path, body, args.n))
    elapsed = time.perf_counter() - started
    each_us = elapsed / args.n * 1e6
    print(f"{args.target}: {args.n / elapsed:.0f} admissions/s in-process ({each_us:.0f} µs each)")
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(drive(app, path, body, args.n))
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
