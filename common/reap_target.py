"""The reap target (SPEC 8.1): a CloudEvent from the CronJob's tick runs one sweep.

The event's contract is `common.reap_event`; the sweep is `common.reaper`; probes, routing
and the body cap are the shared edge (`common.edge`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloudevents.exceptions import GenericException as CloudEventError
from cloudevents.http import from_http
from starlette.requests import Request
from starlette.responses import Response

from common import edge, strict_json
from common.config import Settings
from common.decode_errors import Unreadable
from common.kube import KubeApi
from common.logs import get_logger
from common.reap_event import DRY_RUN_FIELD, REQUIRED_ATTRIBUTES, STRUCTURED_CONTENT_TYPE
from common.reaper import sweep

_log = get_logger("reaper")


class NotACloudEvent(Unreadable):
    """The POST is not a CloudEvents 1.0 event we accept; `reason` is one line for the 400."""


@dataclass(frozen=True)
class Tick:
    """What a reap CloudEvent asks for. `type` is logged, not checked (SPEC 8.1)."""

    id: str
    source: str
    type: str
    dry_run: bool


def parse_event(headers: Mapping[str, str], body: bytes) -> Tick:
    """A binary-mode (`ce-*` headers) or structured-mode CloudEvent; NotACloudEvent otherwise.

    The required attributes are checked here, not by the cloudevents package: it makes up an
    `id` when one is missing, and reports a binary event with one header missing as a
    structured event without `specversion`.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    # Either mode may carry JSON that the cloudevents package parses recursively.
    if strict_json.nesting_exceeds(body.decode("utf-8", "replace")):
        raise NotACloudEvent(str(strict_json.TooDeep()))
    content_type = lowered.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == STRUCTURED_CONTENT_TYPE:
        try:
            doc = json.loads(body)
        except ValueError:
            raise NotACloudEvent("structured-mode body is not JSON") from None
        if not isinstance(doc, dict):
            raise NotACloudEvent("structured-mode body is not a JSON object")
        missing = [a for a in REQUIRED_ATTRIBUTES if not _non_empty_string(doc.get(a))]
        # Structured mode wins over stray ce-* headers, as the CloudEvents HTTP binding says.
        passed = {"content-type": lowered["content-type"]}
    elif any(key.startswith("ce-") for key in lowered):
        missing = [f"ce-{a}" for a in REQUIRED_ATTRIBUTES if not lowered.get(f"ce-{a}")]
        passed = lowered
    else:
        raise NotACloudEvent(f"no ce-* headers and content type is not {STRUCTURED_CONTENT_TYPE}")
    if missing:
        raise NotACloudEvent(f"missing {', '.join(missing)}")
    try:
        event = from_http(passed, body)
    except CloudEventError as exc:
        raise NotACloudEvent(" ".join(str(exc).split())[:200]) from None
    return Tick(
        id=str(event["id"]),
        source=str(event["source"]),
        type=str(event["type"]),
        dry_run=_dry_run(event.data),
    )


def _non_empty_string(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _dry_run(data: Any) -> bool:
    if data is None or (isinstance(data, str | bytes) and not data):
        return False
    if not isinstance(data, dict):
        raise NotACloudEvent("data is not a JSON object")
    flag = data.get(DRY_RUN_FIELD, False)
    # Refused rather than guessed: a sweep that writes when the sender meant a dry run is worse.
    if not isinstance(flag, bool):
        raise NotACloudEvent("data.dryRun is not a boolean")
    return flag


async def serve_reap(
    request: Request,
    kube: KubeApi,
    settings: Settings,
    readiness: edge.Readiness,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Response:
    """GET probes and metrics on any path; POST `/` with a CloudEvent runs one sweep."""

    async def sweep_once(request: Request) -> Response:
        body = await edge.body_or_refusal(request, "not a CloudEvent: body larger than 10 MiB")
        if isinstance(body, Response):
            return body
        try:
            tick = parse_event(request.headers, body)
        except NotACloudEvent as exc:
            return edge.text(f"not a CloudEvent: {exc.reason}", 400)
        return await _sweep(tick, kube, settings, clock())

    return await edge.route(request, readiness, {"/": sweep_once}.get)


async def _sweep(tick: Tick, kube: KubeApi, settings: Settings, now: datetime) -> Response:
    _log.info(
        "sweep requested",
        extra={"ceType": tick.type, "ceId": tick.id, "ceSource": tick.source,
               "dryRun": tick.dry_run},
    )  # fmt: skip
    try:
        # The sweep blocks on the API for seconds; the loop keeps answering probes meanwhile.
        summary = await asyncio.to_thread(sweep, kube, settings, now, dry_run=tick.dry_run)
    except Exception as exc:  # a bug still gets a one-line answer, and the Job retries
        _log.exception("sweep crashed", extra={"ceId": tick.id})
        line = " ".join(str(exc).split()) or type(exc).__name__
        return Response(json.dumps({"error": line}), status_code=500, media_type="application/json")
    status = 200 if summary.listed else 503
    return Response(summary.encode(), status_code=status, media_type="application/json")
