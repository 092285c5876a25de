"""The floor: a bare ASGI app under plain uvicorn doing the trivial function's JSON work, without
functions-framework, gunicorn or Starlette. `make bench` compares every function against it."""

from __future__ import annotations

import json
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    try:
        uid = json.loads(body)["request"]["uid"]
    except (ValueError, KeyError, TypeError):
        uid = ""
    reply = json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
         "response": {"uid": uid, "allowed": True}},
        separators=(",", ":"),
    ).encode()  # fmt: skip
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(reply)).encode())]  # fmt: skip
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": reply})
