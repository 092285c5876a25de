"""Watches: from a resourceVersion or with the initial state, selectors (an object leaving one
arrives as DELETED), bookmarks, 410 Expired for compacted versions."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from tests.kube_emulator import errors
from tests.kube_emulator.core import ApiCore, Target
from tests.kube_emulator.messages import Response, dumps
from tests.kube_emulator.store import Obj

DEFAULT_WATCH_SECONDS = 1800
# A watch that asked for bookmarks gets one after this long without an event, carrying the
# current resourceVersion (the real watch cache sends them about once a minute).
BOOKMARK_INTERVAL_S = 1.0


class WatchVerbs(ApiCore):
    """GET ?watch=true and /watch/ paths."""

    def _watch(self, t: Target, query: dict[str, str], alive: Callable[[], bool]) -> Response:
        rt = t.rt
        label, fields = self._selectors(rt, query)
        try:
            timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        except ValueError:
            raise errors.bad_request("invalid timeoutSeconds") from None
        raw_rv = query.get("resourceVersion", "")
        store = self.store

        def matches(obj: Obj | None) -> bool:
            if obj is None:
                return False
            meta = obj["metadata"]
            if t.namespace and meta.get("namespace") != t.namespace:
                return False
            if t.name and meta.get("name") != t.name:
                return False
            return label.matches(meta.get("labels")) and fields.matches(obj)

        initial: list[Obj] = []
        with store.lock:
            epoch = store.epoch
            # sendInitialEvents (watch-list) starts with the current state whatever the version
            send_initial = query.get("sendInitialEvents") == "true"
            if raw_rv in ("", "0") or send_initial:
                cursor, objs = store.scan(rt.group, rt.plural, t.namespace or None)
                initial = [o for o in objs if matches(o)]
            else:
                try:
                    cursor = int(raw_rv)
                except ValueError:
                    raise errors.bad_request(f"invalid resource version: {raw_rv!r}") from None
        bookmarks = query.get("allowWatchBookmarks") == "true"

        last_sent = [time.monotonic()]  # when this watch last sent anything (bookmarks)

        def event(etype: str, obj: Obj) -> bytes:
            last_sent[0] = time.monotonic()
            return dumps({"type": etype, "object": self._encode(rt, obj)}) + b"\n"

        def stream() -> Iterator[bytes]:
            nonlocal cursor
            for obj in initial:
                yield event("ADDED", obj)
            if send_initial and bookmarks:
                # the end of the initial state, as client-go's watch-list waits for it
                mark = {
                    "kind": rt.kind,
                    "apiVersion": rt.api_version,
                    "metadata": {
                        "resourceVersion": str(cursor),
                        "annotations": {"k8s.io/initial-events-end": "true"},
                    },
                }
                yield dumps({"type": "BOOKMARK", "object": mark}) + b"\n"
            deadline = time.monotonic() + timeout
            while True:
                events = store.events_after(cursor)
                if events is None:
                    gone = errors.gone(
                        f"too old resource version: {cursor} ({store.compacted_rv + 1})"
                    )
                    yield dumps({"type": "ERROR", "object": gone.status()}) + b"\n"
                    return
                for ev in events:
                    cursor = ev.rv
                    if ev.group != rt.group or ev.resource != rt.plural:
                        continue
                    now_in, was_in = matches(ev.obj), matches(ev.old)
                    if ev.type == "ADDED" and now_in:
                        yield event("ADDED", ev.obj)
                    elif ev.type == "DELETED" and (was_in or now_in):
                        yield event("DELETED", ev.obj)
                    elif ev.type == "MODIFIED":
                        if now_in and was_in:
                            yield event("MODIFIED", ev.obj)
                        elif now_in:
                            yield event("ADDED", ev.obj)
                        elif was_in:
                            yield event("DELETED", ev.obj)
                if bookmarks and time.monotonic() - last_sent[0] >= BOOKMARK_INTERVAL_S:
                    mark = {"kind": rt.kind, "apiVersion": rt.api_version,
                            "metadata": {"resourceVersion": str(cursor)}}  # fmt: skip
                    yield dumps({"type": "BOOKMARK", "object": mark}) + b"\n"
                    last_sent[0] = time.monotonic()
                remaining = deadline - time.monotonic()
                if remaining <= 0 or store.epoch != epoch or self.closing or not alive():
                    return
                store.wait(cursor, epoch, min(remaining, 0.5))

        return Response(200, stream=stream())
