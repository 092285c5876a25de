"""The reaper CronJob's sender (SPEC 12.6): one binary-mode CloudEvent, exit status from the reply.

    python -m common.tick URL [--dry-run] [--timeout SECONDS] [--connect-retry SECONDS]

Prints the reply body (the sweep summary) and exits 0 only on 200, so a failed sweep fails the
Job and its backoffLimit retries it. Stdlib only (with the contract in `common.reap_event`): this
runs in a short-lived pod on every tick.
No retry once the event is sent: the next CronJob run is the retry, and a sweep that already
ran must not be doubled by a client that gave up waiting. `--connect-retry` only covers a
function that is still starting (connection refused), as with `make reap`.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from common.reap_event import DRY_RUN_FIELD, binary_headers

# Under the Job's activeDeadlineSeconds (240): a Knative cold start plus a full sweep fit.
WAIT_S = 200.0
_RETRY_PAUSE_S = 0.2


def build_request(url: str, event_id: str, *, dry_run: bool = False) -> urllib.request.Request:
    data = {DRY_RUN_FIELD: True} if dry_run else {}
    body = json.dumps(data, separators=(",", ":")).encode()
    return urllib.request.Request(url, data=body, method="POST", headers=binary_headers(event_id))


def send(
    request: urllib.request.Request, timeout: float, connect_retry: float
) -> tuple[int, bytes]:
    """The reply's status and body; raises OSError when no answer came."""
    give_up = time.monotonic() + connect_retry
    while True:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except urllib.error.URLError as err:
            refused = isinstance(err.reason, ConnectionRefusedError)
            if not refused or time.monotonic() >= give_up:
                raise
            time.sleep(_RETRY_PAUSE_S)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.tick", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "url", help="the reap function, e.g. http://cocoon-reaper.cocoon-system.svc/"
    )
    parser.add_argument("--dry-run", action="store_true", help="sweep and report without writing")
    parser.add_argument(
        "--timeout", type=float, default=WAIT_S, help="seconds to wait for the reply"
    )
    parser.add_argument(
        "--connect-retry",
        type=float,
        default=0.0,
        help="keep retrying a refused connection for this many seconds",
    )
    args = parser.parse_args(argv)
    # The Job pod's name: unique per run, and what an operator finds in `kubectl get pods`.
    event_id = socket.gethostname()
    request = build_request(args.url, event_id, dry_run=args.dry_run)
    try:
        status, body = send(request, args.timeout, args.connect_retry)
    except (OSError, ValueError) as exc:
        print(f"reap tick to {args.url} failed: {exc}", file=sys.stderr)
        return 1
    text = body.decode("utf-8", "replace").strip()
    if status == 200:
        print(text)
        return 0
    print(f"reap tick to {args.url}: HTTP {status}: {text}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
