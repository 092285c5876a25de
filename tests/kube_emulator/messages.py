"""Request and Response: what server.py hands the REST layer and gets back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.kube_emulator.errors import ApiError


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    # A watch: chunks to stream (chunked transfer encoding) instead of `body`.
    stream: Iterator[bytes] | None = None


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, dumps(obj), headers=headers or {})


def error_response(err: ApiError) -> Response:
    return Response(err.code, dumps(err.status()), headers=dict(err.headers))
