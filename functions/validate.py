"""validate: deny scale-down of cocoon-tolerated Deployments and StatefulSets (SPEC section 6)."""

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from common.runtime import Handler, http_handler

HANDLER = http_handler(Handler.VALIDATE)


@functions_framework.aio.http
async def validate(request: Request) -> Response:
    return await HANDLER(request)
