"""validate_cocoonset: the CocoonSet rules the CRD schema cannot express (SPEC section 7)."""

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from common.admission import serve
from common.runtime import endpoint

ENDPOINT = endpoint("validate_cocoonset")


@functions_framework.aio.http
async def validate_cocoonset(request: Request) -> Response:
    return await serve(request, ENDPOINT)
