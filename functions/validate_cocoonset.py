"""validate_cocoonset: the CocoonSet rules the CRD schema cannot express (SPEC section 7)."""

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from common.runtime import Handler, http_handler

HANDLER = http_handler(Handler.VALIDATE_COCOONSET)


@functions_framework.aio.http
async def validate_cocoonset(request: Request) -> Response:
    return await HANDLER(request)
