"""The yardstick: a functions-framework function in the same (ASGI) mode doing the same JSON work
as an admission handler, minus the decision. Our functions are compared against its throughput."""

import json

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response


@functions_framework.aio.http
async def trivial(request: Request) -> Response:
    review = json.loads(await request.body())
    reply = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], "allowed": True},
    }
    return Response(json.dumps(reply, separators=(",", ":")), media_type="application/json")
