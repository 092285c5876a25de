"""reap: one affinity sweep per CloudEvent from the reaper CronJob (SPEC section 8)."""

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from common.runtime import reap_handler

HANDLER = reap_handler()


@functions_framework.aio.http
async def reap(request: Request) -> Response:
    return await HANDLER(request)
