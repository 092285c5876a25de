"""validate_cocoonhibernation: one CocoonHibernation per pod, named after it (issue 15)."""

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from common.runtime import Handler, http_handler

HANDLER = http_handler(Handler.VALIDATE_COCOONHIBERNATION)


@functions_framework.aio.http
async def validate_cocoonhibernation(request: Request) -> Response:
    return await HANDLER(request)
