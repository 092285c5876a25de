"""mutate: stable VM names and sticky cocoon nodes for Pod CREATE (SPEC section 5)."""

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from common.admission import serve
from common.runtime import endpoint

ENDPOINT = endpoint("mutate")


@functions_framework.aio.http
async def mutate(request: Request) -> Response:
    return await serve(request, ENDPOINT)
