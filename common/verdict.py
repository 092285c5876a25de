"""What a decision hands back to the shell: the admission verdict and its patch.

Decisions build these values; only `common.admission` turns them into an AdmissionReview, so
the envelope's shape (uid echo, 403 denials, base64 patch) lives in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from common.gocompat import cut

WARNING_PREFIX = "cocoon-webhook: "
# auditAnnotations keys. The API server files each under `<webhook name>/<key>` and drops (with
# a log line) any whose combined form is not a qualified name, so a key must be a qualified name's
# name part: at most 63 characters of [-A-Za-z0-9_.], alphanumeric at both ends, and no `/`.
AUDIT_REASON = "reason"
# The API server shows warnings to users one per line; long ones wrap badly in kubectl.
MAX_WARNING_CHARS = 120
MAX_QUOTED_CHARS = 40


class Decision(StrEnum):
    """The `decision` label of `cocoon_webhook_admission_total`."""

    ALLOW = "allow"
    DENY = "deny"
    ERROR = "error"
    AFFINITY_FAILED = "affinity_failed"


@dataclass(frozen=True)
class PatchOp:
    """One JSON Patch operation; we only ever emit `add`."""

    path: str
    value: Any
    op: str = "add"

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "path": self.path, "value": self.value}


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    decision: Decision
    message: str = ""
    patch: tuple[PatchOp, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)
    # (key, value) pairs for the AdmissionResponse's auditAnnotations: the audit log's record
    # of why (see AUDIT_REASON for the rules keys follow).
    audit: tuple[tuple[str, str], ...] = ()

    def with_denial_reason(self) -> Verdict:
        """A denial that also files its reason in the audit log (issue 14 asks it of validate:
        the client that was refused may show no one). SPEC 4's deny reply has no other field,
        so the CocoonSet and CocoonHibernation denials stay without it."""
        if self.allowed or not self.message or any(k == AUDIT_REASON for k, _ in self.audit):
            return self
        reason = (AUDIT_REASON, self.message.removeprefix(WARNING_PREFIX))
        return replace(self, audit=(*self.audit, reason))


def allow(decision: Decision = Decision.ALLOW, warnings: tuple[str, ...] = ()) -> Verdict:
    return Verdict(allowed=True, decision=decision, warnings=warnings)


def deny(message: str, decision: Decision = Decision.DENY) -> Verdict:
    return Verdict(allowed=False, decision=decision, message=message)


def patched(patch: tuple[PatchOp, ...], warnings: tuple[str, ...] = ()) -> Verdict:
    return Verdict(allowed=True, decision=Decision.ALLOW, patch=patch, warnings=warnings)


def quoted(value: str) -> str:
    """Double-quote a value for a warning, cutting long ones so the line stays readable."""
    return f'"{cut(value, MAX_QUOTED_CHARS)}"'


def warning(text: str) -> str:
    """A one-line `cocoon-webhook: ` warning of at most 120 characters."""
    return cut(WARNING_PREFIX + " ".join(text.split()), MAX_WARNING_CHARS)
