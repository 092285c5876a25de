"""Test controls outside the Kubernetes API: the request log and scripted faults.

Served under `/_emulator/` (never logged themselves):

- `GET /_emulator/requests` → `[{"method", "path", "query", "status"}, …]` in completion order;
  `query` is a dict of the query parameters (last value wins), `status` 0 for a dropped
  connection. `DELETE /_emulator/requests` clears the log.
- `POST /_emulator/faults` with `{"method": "PUT", "path": "/api/v1/namespaces/*/configmaps/*",
  "status": 500, "delay": 0.2, "drop": false, "times": 1}` scripts the next `times` responses
  to matching requests. `path` is an fnmatch pattern over the path without the query (`*` also
  crosses `/`); `method` `*` matches any. A fault with `status` answers that code with a Status
  body instead of serving the request, with a `Retry-After` header when `retryAfter` (whole
  seconds) is given; `drop` closes the connection without an answer; `loseAnswer` serves the
  request (a write lands) and then closes the connection without sending the answer, whose
  status the log still records; `delay` alone only slows the real answer down. `GET` lists
  pending faults, `DELETE` clears them.
  Faults for watches (`"watch"` set; they match `?watch=true` requests only, and other faults
  never do): `"watch": "drop"` streams `after` events, then resets the connection mid-stream;
  `"watch": "delay"` holds every event (bookmarks too) back `delay` seconds, so the watcher
  lags behind the store; `"watch": "gone"` answers with one ERROR event, 410 Expired, as a
  server whose watch cache moved past the requested version.
- `GET /_emulator/audit` → the admission chain's audit events (`AdmissionChain.audit_events`):
  `[{"operation", "resource", "subresource", "namespace", "name", "annotations"}, …]`;
  `DELETE` clears them.
- `POST /_emulator/reset` with optional `{"seed": NAME}` empties the store, re-seeds it and
  clears pending faults and audit events; `POST /_emulator/compact` drops the watch event log
  (older resourceVersions then answer 410 Gone, as after etcd compaction).
- `POST /_emulator/objects` with `{"path": ..., "objects": [...]}` creates many objects in one
  call, each through the REST layer's rules (`{namespace}` in the path is filled per object).
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass
from typing import Any

MAX_LOG = 200_000
WATCH_FAULTS = ("drop", "delay", "gone")


@dataclass
class Fault:
    method: str
    path: str
    status: int | None
    delay: float
    drop: bool
    times: int
    retry_after: int | None = None
    lose_answer: bool = False
    watch: str | None = None  # drop, delay or gone
    after: int = 0  # events a dropped watch streams first

    def matches(self, method: str, path: str, watching: bool = False) -> bool:
        if (self.watch is not None) != watching:
            return False
        return (self.method in ("*", method)) and fnmatch.fnmatchcase(path, self.path)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "delay": self.delay,
            "drop": self.drop,
            "times": self.times,
            "retryAfter": self.retry_after,
            "loseAnswer": self.lose_answer,
            "watch": self.watch,
            "after": self.after,
        }


def parse_fault(body: Any) -> Fault:
    if not isinstance(body, dict):
        raise ValueError("fault must be a JSON object")
    method = str(body.get("method", "*")).upper()
    path = body.get("path")
    if not isinstance(path, str) or not path:
        raise ValueError("fault needs a path pattern")
    status = body.get("status")
    if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
        raise ValueError("status must be an HTTP status code")
    delay = body.get("delay", 0) or 0
    if not isinstance(delay, int | float) or delay < 0:
        raise ValueError("delay must be a non-negative number of seconds")
    drop = bool(body.get("drop", False))
    times = body.get("times", 1)
    if not isinstance(times, int) or times < 1:
        raise ValueError("times must be a positive integer")
    watch = body.get("watch")
    if watch is not None and watch not in WATCH_FAULTS:
        raise ValueError(f"watch must be one of {', '.join(WATCH_FAULTS)}")
    after = body.get("after", 0)
    if not isinstance(after, int) or after < 0:
        raise ValueError("after must be a non-negative integer")
    if watch is not None:
        if watch == "delay" and not delay:
            raise ValueError("a delay watch fault needs a delay")
        return Fault(method, path, None, float(delay), False, times, watch=watch, after=after)
    retry_after = body.get("retryAfter")
    if retry_after is not None and (
        not isinstance(retry_after, int) or retry_after < 0 or status is None
    ):
        raise ValueError("retryAfter must be a non-negative integer, with a status")
    lose_answer = bool(body.get("loseAnswer", False))
    if lose_answer and (status is not None or drop):
        raise ValueError("loseAnswer serves the request: it goes with neither status nor drop")
    if status is None and not drop and not delay and not lose_answer:
        raise ValueError("a fault needs a status, a delay, drop or loseAnswer")
    return Fault(method, path, status, float(delay), drop, times, retry_after, lose_answer)


class Controls:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        self._faults: list[Fault] = []

    def record(self, method: str, path: str, query: dict[str, str], status: int) -> None:
        entry = {"method": method, "path": path, "query": query, "status": status}
        with self._lock:
            self._log.append(entry)
            if len(self._log) > MAX_LOG:
                del self._log[: MAX_LOG // 2]

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, method: str, path: str, watching: bool = False) -> Fault | None:
        """The first pending fault matching this request, consuming one of its `times`."""
        with self._lock:
            if not self._faults:
                return None
            for f in self._faults:
                if f.matches(method, path, watching):
                    f.times -= 1
                    if f.times <= 0:
                        self._faults.remove(f)
                    return f
        return None
