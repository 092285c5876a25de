"""mutate: stable VM names and sticky cocoon nodes for Pod CREATE (SPEC section 5)."""

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from common.runtime import Handler, http_handler

HANDLER = http_handler(Handler.MUTATE)


@functions_framework.aio.http
async def mutate(request: Request) -> Response:
    return await HANDLER(request)
