"""validate_cocoonhibernation: one CocoonHibernation per pod, named after it (issue 15)."""

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from common.admission import serve
from common.runtime import endpoint

ENDPOINT = endpoint("validate_cocoonhibernation")


@functions_framework.aio.http
async def validate_cocoonhibernation(request: Request) -> Response:
    return await serve(request, ENDPOINT)
