"""CocoonSet admission (SPEC 7): decode the spec, apply the business rules, return a Verdict.

Pure: the admission shell hands over `operation`, `object` and `oldObject` as parsed JSON. The
messages are contracts shared with the Go original (users grep for them, the operator's docs quote
them), so every string here is pinned by a test.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from common.decode_errors import WANTS, Unreadable, first_problem, json_type
from common.gocompat import (
    DNS1123_LABEL_FMT,
    DNS1123_LABEL_MAX,
    DNS1123_LABEL_RE,
    DNS1123_SUBDOMAIN_RE,
    go_len,
    go_quote,
)
from common.quantity import is_quantity
from common.verdict import Decision, Verdict, allow, deny

DECODE_PREFIX: Final = "cocoon-webhook: decode CocoonSet: "
INVALID_PREFIX: Final = "cocoon-webhook: invalid CocoonSet spec: "
OBJECT_MISSING: Final = "object is missing"

AGENT_MODES: Final = frozenset({"clone", "run"})
TOOLBOX_MODES: Final = frozenset({"run", "clone", "static"})
OS_TYPES: Final = frozenset({"linux", "windows", "android", "macos"})
SNAPSHOT_POLICIES: Final = frozenset({"always", "main-only", "never"})
CONN_TYPES: Final = frozenset({"ssh", "rdp", "vnc", "adb"})
BACKENDS: Final = frozenset({"cloud-hypervisor", "firecracker"})
HIBERNATE_POLICIES: Final = frozenset({"retain", "release"})

# What the operator assumes for an absent field; the backend rules judge these effective values.
DEFAULT_BACKEND: Final = "cloud-hypervisor"
DEFAULT_AGENT_MODE: Final = "clone"
DEFAULT_TOOLBOX_MODE: Final = "run"
DEFAULT_OS: Final = "linux"
FIRECRACKER: Final = "firecracker"
STATIC: Final = "static"

# --- RFC 1123 labels (k8s.io/apimachinery/pkg/util/validation) ----------------------------------

_NUMERIC_RE: Final = re.compile("[0-9]+")

LABEL_TOO_LONG: Final = f"must be no more than {DNS1123_LABEL_MAX} characters"
LABEL_HAS_DOTS: Final = "must not contain dots"
# Kubernetes' RegexError joins its examples with "or " after an empty middle, hence two spaces.
LABEL_BAD_CHARS: Final = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    f"regex used for validation is '{DNS1123_LABEL_FMT}')"
)


def rfc1123_label_errors(value: str) -> list[str]:
    """IsDNS1123Label's messages for `value`, in its order; empty when the label is valid."""
    errors = []
    if go_len(value) > DNS1123_LABEL_MAX:
        errors.append(LABEL_TOO_LONG)
    if DNS1123_LABEL_RE.fullmatch(value) is None:
        # Regex only, no length limit: a 300-character dotted name still earns "dots".
        if DNS1123_SUBDOMAIN_RE.fullmatch(value) is not None:
            errors.append(LABEL_HAS_DOTS)
        else:
            errors.append(LABEL_BAD_CHARS)
    return errors


# --- Decoding ---------------------------------------------------------------------------------


class SpecDecodeError(Unreadable):
    """`object` cannot be decoded as a CocoonSet; `reason` is one line naming the JSON path."""


# Go's resource.Quantity.UnmarshalJSON trims Unicode white space before parsing.
_GO_SPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _quantity(value: Any) -> str:
    if value is None:  # a null quantity decodes to zero in Go
        return ""
    if isinstance(value, bool):
        raise PydanticCustomError("quantity", "want quantity")
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        text = value.strip(_GO_SPACE)
        if is_quantity(text):
            return text
    raise PydanticCustomError("quantity", "want quantity")


_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
Int32 = Annotated[int, Field(ge=_INT32_MIN, le=_INT32_MAX)]
Quantity = Annotated[str, PlainValidator(_quantity)]


class JsonView(BaseModel):
    """A narrow, read-only view of what the rules need; unknown fields are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, alias_generator=to_camel)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_absent(cls, data: Any) -> Any:
        # encoding/json leaves a field at its zero value for `null`; dropping the key does the same.
        # The membership test first: most objects have no nulls, and rebuilding each dict is
        # a good part of this decision's cost.
        if isinstance(data, dict) and None in data.values():
            return {key: value for key, value in data.items() if value is not None}
        return data


class Resources(JsonView):
    limits: dict[str, Quantity] = Field(default_factory=dict)
    requests: dict[str, Quantity] = Field(default_factory=dict)


class AgentSpec(JsonView):
    image: str = ""
    replicas: Int32 = 0
    mode: str = ""
    os: str = ""
    backend: str = ""
    conn_type: str = ""
    network: str = ""
    node_pool: str = ""
    vnc_port: Int32 = 0
    service_account_name: str = ""
    storage: Quantity = ""
    resources: Resources = Field(default_factory=Resources)


class ToolboxSpec(JsonView):
    name: str = ""
    image: str = ""
    mode: str = ""
    os: str = ""
    backend: str = ""
    conn_type: str = ""
    static_ip: str = Field(default="", alias="staticIP")
    static_vmid: str = Field(default="", alias="staticVMID")
    network: str = ""
    vnc_port: Int32 = 0
    storage: Quantity = ""
    resources: Resources = Field(default_factory=Resources)


class CocoonSetSpec(JsonView):
    agent: AgentSpec = Field(default_factory=AgentSpec)
    toolboxes: list[ToolboxSpec] = Field(default_factory=list)
    snapshot_policy: str = ""
    hibernate_policy: str = ""
    suspend: bool = False
    node_pool: str = ""

    @field_validator("toolboxes", mode="before")
    @classmethod
    def _null_toolbox_is_empty(cls, data: Any) -> Any:
        # encoding/json decodes a `null` element to a zero ToolboxSpec, which then fails T1.
        if isinstance(data, list):
            return [{} if item is None else item for item in data]
        return data


# pydantic error type → what the field wants, in JSON terms: every integer here is an int32.
_WANTS: Final = {
    **WANTS,
    "quantity": "quantity (e.g. 100Gi, 500m, 1e3)",
    **dict.fromkeys(
        ("int_type", "int_parsing", "int_from_float", "int_parsing_size",
         "greater_than_equal", "less_than_equal"),
        "int32 integer",
    ),
}  # fmt: skip


def decode_reason(error: ValidationError, root: str = "spec") -> str:
    """One line naming the first bad field (its JSON path under `root`), what it wants and got."""
    return first_problem(error, root, _WANTS)


def decode_spec(obj: Any) -> CocoonSetSpec:
    """Decode `object.spec` into the view the rules read; raise SpecDecodeError on a bad shape."""
    if obj is None:
        raise SpecDecodeError(OBJECT_MISSING)
    if not isinstance(obj, dict):
        raise SpecDecodeError(f"object: want object, got {json_type(obj)}")
    spec = obj.get("spec")
    if spec is None:
        return CocoonSetSpec()
    try:
        return CocoonSetSpec.model_validate(spec)
    except ValidationError as error:
        raise SpecDecodeError(decode_reason(error)) from None


# --- Rules --------------------------------------------------------------------------------------

# A registry-relative image reference, as the operator clones from its own registry: distribution's
# path components, and a tag. A host with a port or a digest cannot be cloned.
_REPO_RE: Final = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_TAG_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_CLOUDIMG_SCHEMES: Final = ("http://", "https://")


def is_repo_tag(image: str) -> bool:
    """`repo[:tag]` relative to a registry: split at the first `:` unless nothing precedes it."""
    repo, colon, tag = image.partition(":")
    if not colon or not repo:
        repo, tag = image, "latest"
    return _REPO_RE.fullmatch(repo) is not None and _TAG_RE.fullmatch(tag) is not None


def spec_errors(spec: CocoonSetSpec) -> list[str]:
    """The rules of SPEC 7 and issue 15, in their order; empty when the spec is acceptable."""
    errors: list[str] = []
    agent = spec.agent
    if agent.image == "":
        errors.append("spec.agent.image is required")
    if agent.replicas < 0:
        errors.append(f"spec.agent.replicas must be >= 0, got {agent.replicas}")
    if agent.mode and agent.mode not in AGENT_MODES:
        errors.append(f"spec.agent.mode must be clone or run, got {go_quote(agent.mode)}")
    errors.extend(_os_errors("spec.agent", agent.os))
    errors.extend(_conn_type_errors("spec.agent", agent.conn_type))
    agent_backend = agent.backend or DEFAULT_BACKEND
    errors.extend(
        _vm_errors(
            "spec.agent", agent.backend, agent.os, agent.image, agent.mode or DEFAULT_AGENT_MODE
        )
    )

    seen: set[str] = set()
    for index, toolbox in enumerate(spec.toolboxes):
        errors.extend(_toolbox_errors(index, toolbox, seen, agent_backend))

    if spec.snapshot_policy and spec.snapshot_policy not in SNAPSHOT_POLICIES:
        errors.append(
            "spec.snapshotPolicy must be always, main-only, or never, "
            f"got {go_quote(spec.snapshot_policy)}"
        )
    if spec.hibernate_policy and spec.hibernate_policy not in HIBERNATE_POLICIES:
        errors.append(
            f"spec.hibernatePolicy must be retain or release, got {go_quote(spec.hibernate_policy)}"
        )
    return errors


def _os_errors(path: str, os: str) -> list[str]:
    if os and os not in OS_TYPES:
        return [f"{path}.os must be linux, windows, android, or macos, got {go_quote(os)}"]
    return []


def _conn_type_errors(path: str, conn_type: str) -> list[str]:
    if conn_type and conn_type not in CONN_TYPES:
        return [f"{path}.connType must be ssh, rdp, vnc, or adb, got {go_quote(conn_type)}"]
    return []


def _vm_errors(
    path: str, backend: str, os: str, image: str, mode: str, agent_backend: str | None = None
) -> list[str]:
    """B1-B5 and I1 for a VM the node boots (not a static toolbox); `mode` is the effective one.

    `agent_backend` is the agent's effective backend when `path` is a toolbox (B5)."""
    errors = []
    if backend and backend not in BACKENDS:
        errors.append(
            f"{path}.backend must be cloud-hypervisor or firecracker, got {go_quote(backend)}"
        )
    effective = backend or DEFAULT_BACKEND
    firecracker = effective == FIRECRACKER
    if firecracker and (os or DEFAULT_OS) == "windows":
        errors.append(f"{path}: firecracker does not support Windows guests")
    if firecracker and image.startswith(_CLOUDIMG_SCHEMES):
        errors.append(
            f"{path}: firecracker requires an OCI image, cloudimg URLs are not supported "
            f"(got {go_quote(image)})"
        )
    if agent_backend is not None and effective != agent_backend:
        errors.append(
            f"{path}.backend {go_quote(effective)} must match spec.agent.backend "
            f"{go_quote(agent_backend)}"
        )
    if firecracker and mode != "run":
        errors.append(f"{path}: firecracker does not support {mode} mode, use mode=run instead")
    if mode == "clone" and image and not is_repo_tag(image):
        errors.append(
            f"{path}.image {go_quote(image)} must be repo[:tag] when mode is clone "
            "(no registry port or digest)"
        )
    return errors


def _toolbox_errors(
    index: int, toolbox: ToolboxSpec, seen: set[str], agent_backend: str
) -> list[str]:
    path = f"spec.toolboxes[{index}]"
    name = toolbox.name
    if name == "":
        # Nothing else about a nameless toolbox is worth reporting, and "" is no duplicate.
        return [f"{path}.name is required"]

    errors = []
    quoted = go_quote(name)
    label_errors = rfc1123_label_errors(name)
    if label_errors:
        errors.append(f"{path}.name {quoted} must match RFC 1123 label: {'; '.join(label_errors)}")
    if _NUMERIC_RE.fullmatch(name):
        # Agent pods are named <set>-<slot>; toolbox pods <set>-<name>: a numeric name collides.
        errors.append(
            f"{path}.name {quoted} must not be purely numeric (conflicts with agent slot naming)"
        )
    # Invalid names are tracked too: the user fixing one should not uncover a hidden duplicate.
    if name in seen:
        errors.append(f"{path}.name {quoted} duplicates an earlier toolbox")
    seen.add(name)

    mode = toolbox.mode
    if mode and mode not in TOOLBOX_MODES:
        errors.append(f"{path}.mode must be run, clone, or static, got {go_quote(mode)}")
    errors.extend(_os_errors(path, toolbox.os))
    if mode == STATIC:
        if toolbox.static_ip == "":
            errors.append(f"{path}.staticIP is required when mode=static")
        if toolbox.static_vmid == "":
            errors.append(f"{path}.staticVMID is required when mode=static")
        # A static toolbox is a machine that already runs: no hypervisor, backend or image here.
        errors.extend(_conn_type_errors(path, toolbox.conn_type))
        return errors
    if toolbox.image == "":
        errors.append(f"{path}.image is required when mode is run or clone")
    errors.extend(_conn_type_errors(path, toolbox.conn_type))
    errors.extend(
        _vm_errors(
            path,
            toolbox.backend,
            toolbox.os,
            toolbox.image,
            mode or DEFAULT_TOOLBOX_MODE,
            agent_backend,
        )
    )
    return errors


# --- Decision -----------------------------------------------------------------------------------


def _json_equal(a: Any, b: Any) -> bool:
    """Deep equality of parsed JSON, where `true` is not the number 1 (as it is for Python's ==)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    return bool(a == b)


def decide(operation: str, obj: Any, old: Any) -> Verdict:
    """SPEC 7's row table for one CocoonSet review."""
    if operation not in ("CREATE", "UPDATE"):
        return allow()
    # Only a spec change needs the rules: metadata-only updates (finalizer removal during
    # deletion above all) must pass even for objects stored before a rule existed.
    if (
        operation == "UPDATE"
        and isinstance(obj, dict)
        and isinstance(old, dict)
        # `null` and a missing key both mean "no spec", here as in decoding.
        and _json_equal(old.get("spec"), obj.get("spec"))
    ):
        return allow()
    try:
        spec = decode_spec(obj)
    except SpecDecodeError as error:
        return deny(DECODE_PREFIX + error.reason, Decision.ERROR)
    errors = spec_errors(spec)
    if errors:
        return deny(INVALID_PREFIX + "; ".join(errors), Decision.DENY)
    return allow()
