"""reap: one affinity sweep per CloudEvent from the reaper CronJob (SPEC section 8)."""

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from common.runtime import Handler, http_handler

HANDLER = http_handler(Handler.REAP)


@functions_framework.aio.http
async def reap(request: Request) -> Response:
    return await HANDLER(request)
