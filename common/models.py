"""The AdmissionReview v1 envelope: strict decoding of what we read, and encoding of the reply.

Only the fields the handlers read are modelled; everything else in the review is ignored so a
newer API server's additions never break us. `object`/`oldObject` stay raw JSON here: each
handler decodes its own narrow view, because an undecodable object is a verdict, not a 400.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from common import strict_json
from common.decode_errors import first_problem
from common.gocompat import go_quote, go_utf8
from common.verdict import Verdict

ADMISSION_API_VERSION = "admission.k8s.io/v1"
ADMISSION_KIND = "AdmissionReview"


class EnvelopeError(ValueError):
    """A body that is not an AdmissionReview we can answer; its message is the 400 reply line."""


class _GroupVersionKind(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    group: StrictStr = ""
    version: StrictStr = ""
    kind: StrictStr = ""


class _GroupVersionResource(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    group: StrictStr = ""
    version: StrictStr = ""
    resource: StrictStr = ""


class AdmissionRequest(BaseModel):
    """`request` of an AdmissionReview, narrowed to the fields SPEC section 4 reads."""

    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)

    uid: StrictStr = Field(min_length=1)
    kind: _GroupVersionKind = Field(default_factory=_GroupVersionKind)
    resource: _GroupVersionResource = Field(default_factory=_GroupVersionResource)
    sub_resource: StrictStr = Field(default="", alias="subResource")
    name: StrictStr = ""
    namespace: StrictStr = ""
    operation: StrictStr = ""
    object: Any = None
    old_object: Any = Field(default=None, alias="oldObject")
    dry_run: StrictBool = Field(default=False, alias="dryRun")


@dataclass(frozen=True)
class Review:
    """A decoded review plus when its body finished arriving (deadlines start there)."""

    request: AdmissionRequest
    received_at: float


def parse_review(body: bytes) -> AdmissionRequest:
    """Decode an AdmissionReview body, or raise EnvelopeError with the one-line 400 reason."""
    try:
        # Decode first: json.loads(bytes) would guess UTF-16/32 from a BOM; JSON is UTF-8.
        document = strict_json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise EnvelopeError(f"decode admission review: invalid UTF-8: {exc.reason}") from None
    except ValueError as exc:
        raise EnvelopeError(f"decode admission review: {_one_line(str(exc))}") from None
    if not isinstance(document, dict):
        raise EnvelopeError("decode admission review: body is not a JSON object")
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if api_version != ADMISSION_API_VERSION or kind != ADMISSION_KIND:
        raise EnvelopeError(
            f"unsupported admission review {_go_string(api_version)} {_go_string(kind)}: "
            f"want {ADMISSION_API_VERSION} {ADMISSION_KIND}"
        )
    request = document.get("request")
    if not isinstance(request, dict):
        raise EnvelopeError("admission review missing request")
    try:
        return AdmissionRequest.model_validate(request)
    except ValidationError as exc:
        raise EnvelopeError(f"decode admission review: {first_problem(exc, 'request')}") from None


def _go_string(value: Any) -> str:
    """Quote a possibly non-string envelope field as Go's %q would, cut to keep the reply short."""
    if value is None:
        return '""'
    text = value if isinstance(value, str) else json.dumps(value)
    return go_quote(text[:64])


def _one_line(text: str) -> str:
    return " ".join(text.split())


def encode_response(uid: str, verdict: Verdict) -> bytes:
    """The one place an AdmissionReview reply is built (SPEC section 4)."""
    response: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        response["status"] = {"message": verdict.message, "reason": "Forbidden", "code": 403}
    if verdict.patch:
        ops = [op.to_json() for op in verdict.patch]
        compact = go_utf8(json.dumps(ops, separators=(",", ":"), ensure_ascii=False))
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(compact).decode("ascii")
    if verdict.warnings:
        response["warnings"] = list(verdict.warnings)
    if verdict.audit:
        response["auditAnnotations"] = dict(verdict.audit)
    review = {"apiVersion": ADMISSION_API_VERSION, "kind": ADMISSION_KIND, "response": response}
    return go_utf8(json.dumps(review, separators=(",", ":"), ensure_ascii=False))
