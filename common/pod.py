"""Narrow views of the Kubernetes objects the mutate path reads: the admitted Pod, listed Nodes and
listed Pods.

Two decoding policies on purpose. The admitted Pod is decoded strictly (SPEC 5.3): a field of the
wrong JSON type makes it undecodable, the webhook allows it untouched and counts an `error`. Listed
Nodes and Pods come from the API server, which already validated them; a surprise there must not
fail an admission, so each odd field falls back to its empty value and odd list items are skipped.
Only the fields we read are modelled; everything else is ignored, never re-serialised.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import (
    AliasPath,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic.alias_generators import to_camel

from common.decode_errors import Unreadable, first_problem
from common.naming import DEFAULT_POOL, POOL_KEY, TOLERATION_KEY, VM_NAME_ANNOTATION

_DONE_PHASES = frozenset({"Succeeded", "Failed"})


class PodDecodeError(Unreadable):
    """The admitted object is not a Pod we can read; `reason` is one line for the log."""


# --- the admitted Pod: strict ------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(
        strict=True,
        extra="ignore",
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
    )


class Toleration(_Strict):
    key: str = ""
    operator: str = ""
    value: str = ""
    effect: str = ""


class OwnerReference(_Strict):
    kind: str = ""
    name: str = ""


class PodMetadata(_Strict):
    name: str = ""
    generate_name: str = ""
    namespace: str = ""
    # `null` is accepted only for these two (SPEC 5.3); for annotations it means the same as absent:
    # the patch must add the map before it can add a key into it.
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[OwnerReference] = []


class PodSpec(_Strict):
    node_name: str = ""
    node_selector: dict[str, str] = {}
    tolerations: list[Toleration] = []


class PodView(_Strict):
    """The admitted Pod, as far as mutate reads it. Build it with `decode`."""

    metadata: PodMetadata = PodMetadata()
    spec: PodSpec = PodSpec()

    @classmethod
    def decode(cls, obj: Any) -> PodView:
        """Decode `request.object`; raise PodDecodeError when it breaks SPEC 5.3."""
        if obj is None:
            raise PodDecodeError("object is missing or null")
        if not isinstance(obj, dict):
            raise PodDecodeError("object is not a JSON object")
        try:
            return cls.model_validate(obj)
        except ValidationError as err:
            raise PodDecodeError(first_problem(err, "object")) from None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def generate_name(self) -> str:
        return self.metadata.generate_name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def node_name(self) -> str:
        return self.spec.node_name

    @property
    def labels(self) -> Mapping[str, str]:
        return self.metadata.labels or {}

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.metadata.annotations or {}

    @property
    def annotations_present(self) -> bool:
        """False for absent or null annotations: a JSON Patch `add` into them would fail."""
        return self.metadata.annotations is not None

    @property
    def node_selector(self) -> Mapping[str, str]:
        return self.spec.node_selector

    @property
    def tolerations(self) -> tuple[Toleration, ...]:
        return tuple(self.spec.tolerations)

    @property
    def owner_references(self) -> tuple[OwnerReference, ...]:
        return tuple(self.metadata.owner_references)


def decode_pod(obj: Any) -> PodView | PodDecodeError:
    """PodView.decode, returning the error instead of raising (what mutate.plan takes)."""
    try:
        return PodView.decode(obj)
    except PodDecodeError as err:
        return err


def is_cocoon_pod(pod: PodView) -> bool:
    """A cocoon pod tolerates the virtual-kubelet provider key (operator, value, effect ignored)."""
    return any(t.key == TOLERATION_KEY for t in pod.tolerations)


def pool_of(pod: PodView) -> str:
    """SPEC 5.2: nodeSelector, then label, then annotation, then `default`; first non-empty wins.

    The nodeSelector comes first because it is what actually constrains scheduling.
    """
    for source in (pod.node_selector, pod.labels, pod.annotations):
        pool = source.get(POOL_KEY, "")
        if pool:
            return pool
    return DEFAULT_POOL


# --- listed Nodes and Pods: tolerant -----------------------------------------------------------

_T = TypeVar("_T")


def _or_empty(empty: Any) -> WrapValidator:
    """Fall back to `empty` (a zero value, copied per use) when a listed field has an odd type."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            return type(empty)()

    return WrapValidator(validate)


def _skip_bad_items(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Keep the list items that validate; a non-list counts as empty."""
    if not isinstance(value, list | tuple):
        return ()
    kept: list[Any] = []
    for item in value:
        try:
            kept.extend(handler([item]))
        except ValidationError:
            continue
    return tuple(kept)


_Str = Annotated[str, _or_empty("")]
_StrMap = Annotated[dict[str, str], _or_empty({})]
_Bool = Annotated[bool, _or_empty(False)]


class _Tolerant(BaseModel):
    model_config = ConfigDict(
        extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True
    )


class Taint(_Tolerant):
    key: _Str = ""
    value: _Str = ""
    effect: _Str = ""


class NodeCondition(_Tolerant):
    type: _Str = ""
    status: _Str = ""


class NodeView(_Tolerant):
    """A listed Node, flattened. `NodeView.model_validate(raw_node)` reads the Kubernetes JSON."""

    name: _Str = Field("", validation_alias=AliasPath("metadata", "name"))
    labels: _StrMap = Field({}, validation_alias=AliasPath("metadata", "labels"))
    unschedulable: _Bool = Field(False, validation_alias=AliasPath("spec", "unschedulable"))
    deletion_timestamp: Annotated[str | None, _or_empty(None)] = Field(
        None, validation_alias=AliasPath("metadata", "deletionTimestamp")
    )
    conditions: Annotated[tuple[NodeCondition, ...], WrapValidator(_skip_bad_items)] = Field(
        (), validation_alias=AliasPath("status", "conditions")
    )
    taints: Annotated[tuple[Taint, ...], WrapValidator(_skip_bad_items)] = Field(
        (), validation_alias=AliasPath("spec", "taints")
    )

    @property
    def ready(self) -> str:
        """Status of the `Ready` condition: `True`, `False`, `Unknown`, or `` when not reported."""
        for condition in self.conditions:
            if condition.type == "Ready":
                return condition.status
        return ""

    @property
    def deleting(self) -> bool:
        return self.deletion_timestamp is not None


@dataclass(frozen=True, slots=True)
class PodSummary:
    """A listed or watched Pod, flattened: enough to tell which names and VM names are taken,
    and where. Slotted and built by hand, not by pydantic: the caches hold one per pod of the
    cluster, and at 50,000 pods every byte of it counts (see `PodSummary.from_json`)."""

    name: str = ""
    namespace: str = ""
    phase: str = ""
    node_name: str = ""
    vm_name: str = ""
    owner: str = ""  # name of the controlling owner (a ReplicaSet for Deployment pods)
    deleting: bool = False

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> PodSummary:
        """Tolerant like the views above: odd types read as empty. Repeated strings (namespace,
        node, phase) are interned so 50,000 summaries share them."""
        meta = _mapping(obj.get("metadata"))
        spec = _mapping(obj.get("spec"))
        status = _mapping(obj.get("status"))
        annotations = _mapping(meta.get("annotations"))
        owner = ""
        owners = meta.get("ownerReferences")
        if isinstance(owners, list):
            for ref in owners:
                if isinstance(ref, dict) and ref.get("controller") is True:
                    owner = _string(ref.get("name"))
                    break
        return cls(
            name=_string(meta.get("name")),
            namespace=sys.intern(_string(meta.get("namespace"))),
            phase=sys.intern(_string(status.get("phase"))),
            node_name=sys.intern(_string(spec.get("nodeName"))),
            vm_name=_string(annotations.get(VM_NAME_ANNOTATION)),
            owner=owner,
            deleting=meta.get("deletionTimestamp") is not None,
        )

    @property
    def live(self) -> bool:
        """Live = not finished. Terminating pods are live: their VM may still run."""
        return self.phase not in _DONE_PHASES


# A node's live pods as the picker counts them: the summaries of a LIST, or, from the pod
# cache, the set of (namespace, name) of its live pods, kept current so a pick costs no scan.
NodePods = Sequence["PodSummary"] | AbstractSet[tuple[str, str]]


def live_keys(pods: NodePods) -> AbstractSet[tuple[str, str]]:
    if isinstance(pods, AbstractSet):
        return pods
    return {(p.namespace, p.name) for p in pods if p.live}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def nodes_from_json(items: Iterable[Any]) -> list[NodeView]:
    """Views of a NodeList's `items`; non-objects and nameless items are skipped."""
    views = (NodeView.model_validate(item) for item in items if isinstance(item, dict))
    return [view for view in views if view.name]


def pods_from_json(items: Iterable[Any]) -> list[PodSummary]:
    """Views of a PodList's `items`; non-objects and nameless items are skipped."""
    views = (PodSummary.from_json(item) for item in items if isinstance(item, dict))
    return [view for view in views if view.name]
