"""validate: deny scale-down of cocoon-tolerated Deployments and StatefulSets (SPEC section 6)."""

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from common.admission import serve
from common.runtime import endpoint

ENDPOINT = endpoint("validate")


@functions_framework.aio.http
async def validate(request: Request) -> Response:
    return await serve(request, ENDPOINT)
