"""API errors as `metav1.Status` objects with the reasons and messages the real API server uses.

Clients branch on `reason` and `code`, and people read `message`; both follow
k8s.io/apimachinery/pkg/api/errors so that code written against the emulator behaves the same
against a cluster.
"""

from __future__ import annotations

from typing import Any

# HTTP code → the StatusReason the API server pairs with it when nothing more specific applies
# (apimachinery errors.NewGenericServerResponse).
REASON_BY_CODE: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def qualified(group: str, resource: str) -> str:
    """`configmaps` in the core group, else `deployments.apps` (schema.GroupResource.String)."""
    return f"{resource}.{group}" if group else resource


class ApiError(Exception):
    """An error the REST layer turns into a `Status` response."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            out["details"] = self.details
        out["code"] = self.code
        return out


def _details(group: str, kind: str, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    return details


def not_found(group: str, resource: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(group, resource)} "{name}" not found',
        _details(group, resource, name),
    )


def already_exists(group: str, resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(group, resource)} "{name}" already exists',
        _details(group, resource, name),
    )


def conflict(group: str, resource: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(group, resource)} "{name}": {why}',
        _details(group, resource, name),
    )


MODIFIED = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def stale(group: str, resource: str, name: str) -> ApiError:
    """The optimistic-concurrency failure of a write carrying an old resourceVersion."""
    return conflict(group, resource, name, MODIFIED)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden(group: str, resource: str, name: str, why: str) -> ApiError:
    target = f'{qualified(group, resource)} "{name}"' if name else qualified(group, resource)
    return ApiError(
        403, "Forbidden", f"{target} is forbidden: {why}", _details(group, resource, name)
    )


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message, {})


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}",
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


class Cause:
    """One `details.causes` entry: the field path and its complaint (field.Error)."""

    __slots__ = ("field", "message", "reason")

    def __init__(self, reason: str, field: str, message: str) -> None:
        self.reason = reason
        self.field = field
        self.message = message

    def text(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


def invalid(group: str, kind: str, name: str, causes: list[Cause]) -> ApiError:
    """422 Invalid, formatted like errors.NewInvalid (one cause bare, several in brackets)."""
    texts = [c.text() for c in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details = _details(group, kind, name)
    details["causes"] = [c.to_json() for c in causes]
    return ApiError(
        422,
        "Invalid",
        f'{kind}.{group} "{name}" is invalid: {joined}'
        if group
        else f'{kind} "{name}" is invalid: {joined}',
        details,
    )


def causes_from_dicts(raw: list[dict[str, Any]]) -> list[Cause]:
    return [
        Cause(
            str(c.get("reason", "FieldValueInvalid")),
            str(c.get("field", "")),
            str(c.get("message", "")),
        )
        for c in raw
    ]
