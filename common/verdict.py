"""What a decision hands back to the shell: the admission verdict and its patch.

Decisions build these values; only `common.admission` turns them into an AdmissionReview, so
the envelope's shape (uid echo, 403 denials, base64 patch) lives in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

WARNING_PREFIX = "cocoon-webhook: "
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


def allow(decision: Decision = Decision.ALLOW, warnings: tuple[str, ...] = ()) -> Verdict:
    return Verdict(allowed=True, decision=decision, warnings=warnings)


def deny(message: str, decision: Decision = Decision.DENY) -> Verdict:
    return Verdict(allowed=False, decision=decision, message=message)


def patched(patch: tuple[PatchOp, ...], warnings: tuple[str, ...] = ()) -> Verdict:
    return Verdict(allowed=True, decision=Decision.ALLOW, patch=patch, warnings=warnings)


def quoted(value: str) -> str:
    """Double-quote a value for a warning, cutting long ones so the line stays readable."""
    if len(value) > MAX_QUOTED_CHARS:
        value = value[: MAX_QUOTED_CHARS - 1] + "…"
    return f'"{value}"'


def warning(text: str) -> str:
    """A one-line `cocoon-webhook: ` warning of at most 120 characters."""
    line = WARNING_PREFIX + " ".join(text.split())
    if len(line) > MAX_WARNING_CHARS:
        line = line[: MAX_WARNING_CHARS - 1] + "…"
    return line
