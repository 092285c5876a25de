"""validate_cocoonset (SPEC 7, issue 15): RFC 1123 messages, decoding, rules and the row table."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.decisions.validate_cocoonset import (
    LABEL_BAD_CHARS,
    LABEL_HAS_DOTS,
    LABEL_TOO_LONG,
    CocoonSetSpec,
    SpecDecodeError,
    ToolboxSpec,
    decide,
    decode_spec,
    is_repo_tag,
    rfc1123_label_errors,
    spec_errors,
)
from common.verdict import Decision, Verdict

BAD_CHARS = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
QTY = "want quantity (e.g. 100Gi, 500m, 1e3)"

# --- RFC 1123 -------------------------------------------------------------------------------------


def test_label_messages_are_pinned() -> None:
    assert LABEL_TOO_LONG == "must be no more than 63 characters"
    assert LABEL_HAS_DOTS == "must not contain dots"
    assert LABEL_BAD_CHARS == BAD_CHARS


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        pytest.param("tb", [], id="valid"),
        pytest.param("a", [], id="one-char"),
        pytest.param("0", [], id="digit"),
        pytest.param("my-name", [], id="hyphen"),
        pytest.param("123-abc", [], id="leading-digits"),
        pytest.param("a" * 63, [], id="63-chars"),
        pytest.param("a" * 64, [LABEL_TOO_LONG], id="64-chars-length-only"),
        pytest.param("BadName_", [BAD_CHARS], id="upper-and-underscore"),
        pytest.param("a.b", [LABEL_HAS_DOTS], id="dots"),
        pytest.param("-a", [BAD_CHARS], id="leading-hyphen"),
        pytest.param("a-", [BAD_CHARS], id="trailing-hyphen"),
        pytest.param("a..b", [BAD_CHARS], id="empty-subdomain-label"),
        pytest.param(".a", [BAD_CHARS], id="leading-dot"),
        pytest.param("a b", [BAD_CHARS], id="space"),
        pytest.param("a\n", [BAD_CHARS], id="trailing-newline"),
        pytest.param("é", [BAD_CHARS], id="non-ascii"),
        pytest.param(
            "a" * 40 + "." + "b" * 40, [LABEL_TOO_LONG, LABEL_HAS_DOTS], id="long-and-dots"
        ),
        pytest.param("A" * 64, [LABEL_TOO_LONG, BAD_CHARS], id="long-and-bad"),
        pytest.param("é" * 32, [LABEL_TOO_LONG, BAD_CHARS], id="length-in-utf8-bytes"),
        pytest.param(
            ".".join(["a"] * 150),
            [LABEL_TOO_LONG, LABEL_HAS_DOTS],
            id="dots-even-past-subdomain-length",
        ),
    ],
)
def test_rfc1123_label_errors(value: str, errors: list[str]) -> None:
    assert rfc1123_label_errors(value) == errors


# --- decode_spec ----------------------------------------------------------------------------------


def cs(spec: Any) -> dict[str, Any]:
    return {"apiVersion": "cocoonset.cocoonstack.io/v1", "kind": "CocoonSet", "spec": spec}


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        pytest.param(None, "object is missing", id="object-null"),
        pytest.param([], "object: want object, got array", id="object-array"),
        pytest.param("x", "object: want object, got string", id="object-string"),
        pytest.param(cs([]), "spec: want object, got array", id="spec-array"),
        pytest.param(cs(1), "spec: want object, got number 1", id="spec-number"),
        pytest.param(cs({"agent": "x"}), "spec.agent: want object, got string", id="agent"),
        pytest.param(
            cs({"agent": {"replicas": "3"}}),
            "spec.agent.replicas: want int32 integer, got string",
            id="replicas-string",
        ),
        pytest.param(
            cs({"agent": {"replicas": 1.0}}),
            "spec.agent.replicas: want int32 integer, got number 1.0",
            id="replicas-float",
        ),
        pytest.param(
            cs({"agent": {"replicas": 1.5}}),
            "spec.agent.replicas: want int32 integer, got number 1.5",
            id="replicas-fraction",
        ),
        pytest.param(
            cs({"agent": {"replicas": True}}),
            "spec.agent.replicas: want int32 integer, got bool",
            id="replicas-bool",
        ),
        pytest.param(
            cs({"agent": {"replicas": 2**31}}),
            "spec.agent.replicas: want int32 integer, got number 2147483648",
            id="replicas-above-int32",
        ),
        pytest.param(
            cs({"agent": {"replicas": -(2**31) - 1}}),
            "spec.agent.replicas: want int32 integer, got number -2147483649",
            id="replicas-below-int32",
        ),
        pytest.param(
            cs({"agent": {"replicas": 10**5000}}),
            "spec.agent.replicas: want int32 integer, got number",
            id="replicas-huge",
        ),
        pytest.param(
            cs({"agent": {"vncPort": "5900"}}),
            "spec.agent.vncPort: want int32 integer, got string",
            id="agent-vnc-port",
        ),
        pytest.param(
            cs({"agent": {"image": 1}}),
            "spec.agent.image: want string, got number 1",
            id="agent-image",
        ),
        pytest.param(
            cs({"agent": {"mode": []}}), "spec.agent.mode: want string, got array", id="agent-mode"
        ),
        pytest.param(
            cs({"agent": {"os": {}}}), "spec.agent.os: want string, got object", id="agent-os"
        ),
        pytest.param(
            cs({"agent": {"network": False}}),
            "spec.agent.network: want string, got bool",
            id="agent-network",
        ),
        pytest.param(
            cs({"agent": {"nodePool": 1}}),
            "spec.agent.nodePool: want string, got number 1",
            id="agent-node-pool",
        ),
        pytest.param(
            cs({"agent": {"serviceAccountName": 1}}),
            "spec.agent.serviceAccountName: want string, got number 1",
            id="agent-service-account",
        ),
        pytest.param(
            cs({"agent": {"storage": "abc"}}),
            f'spec.agent.storage: {QTY}, got "abc"',
            id="agent-storage",
        ),
        pytest.param(
            cs({"agent": {"storage": "1 Gi"}}),
            f'spec.agent.storage: {QTY}, got "1 Gi"',
            id="agent-storage-inner-space",
        ),
        pytest.param(
            cs({"agent": {"storage": True}}),
            f"spec.agent.storage: {QTY}, got bool",
            id="agent-storage-bool",
        ),
        pytest.param(
            cs({"agent": {"storage": {}}}),
            f"spec.agent.storage: {QTY}, got object",
            id="agent-storage-object",
        ),
        pytest.param(
            cs({"agent": {"resources": []}}),
            "spec.agent.resources: want object, got array",
            id="agent-resources",
        ),
        pytest.param(
            cs({"agent": {"resources": {"limits": "1"}}}),
            "spec.agent.resources.limits: want object, got string",
            id="agent-limits",
        ),
        pytest.param(
            cs({"agent": {"resources": {"limits": {"cpu": "lots"}}}}),
            f'spec.agent.resources.limits.cpu: {QTY}, got "lots"',
            id="agent-limit",
        ),
        pytest.param(
            cs({"agent": {"resources": {"requests": {"memory": "1.5.5"}}}}),
            f'spec.agent.resources.requests.memory: {QTY}, got "1.5.5"',
            id="agent-request",
        ),
        pytest.param(
            cs({"agent": {"resources": {"limits": {"nvidia.com/gpu": "x" * 100}}}}),
            f'spec.agent.resources.limits["nvidia.com/gpu"]: {QTY}, got "{"x" * 39}…"',
            id="odd-key-and-long-value",
        ),
        pytest.param(
            cs({"agent": {"storage": "a\nb"}}),
            f'spec.agent.storage: {QTY}, got "a\\nb"',
            id="value-kept-on-one-line",
        ),
        pytest.param(
            cs({"toolboxes": {}}), "spec.toolboxes: want array, got object", id="toolboxes"
        ),
        pytest.param(
            cs({"toolboxes": ["tb"]}), "spec.toolboxes[0]: want object, got string", id="toolbox"
        ),
        pytest.param(
            cs({"toolboxes": [{}, {"name": 7}]}),
            "spec.toolboxes[1].name: want string, got number 7",
            id="toolbox-name",
        ),
        pytest.param(
            cs({"toolboxes": [{"image": 1}]}),
            "spec.toolboxes[0].image: want string, got number 1",
            id="toolbox-image",
        ),
        pytest.param(
            cs({"toolboxes": [{"mode": 1}]}),
            "spec.toolboxes[0].mode: want string, got number 1",
            id="toolbox-mode",
        ),
        pytest.param(
            cs({"toolboxes": [{"os": 1}]}),
            "spec.toolboxes[0].os: want string, got number 1",
            id="toolbox-os",
        ),
        pytest.param(
            cs({"toolboxes": [{"staticIP": 1}]}),
            "spec.toolboxes[0].staticIP: want string, got number 1",
            id="static-ip",
        ),
        pytest.param(
            cs({"toolboxes": [{"staticVMID": 1}]}),
            "spec.toolboxes[0].staticVMID: want string, got number 1",
            id="static-vmid",
        ),
        pytest.param(
            cs({"toolboxes": [{"vncPort": 0.5}]}),
            "spec.toolboxes[0].vncPort: want int32 integer, got number 0.5",
            id="toolbox-vnc-port",
        ),
        pytest.param(
            cs({"toolboxes": [{"storage": "Gi"}]}),
            f'spec.toolboxes[0].storage: {QTY}, got "Gi"',
            id="toolbox-storage",
        ),
        pytest.param(
            cs({"toolboxes": [{"resources": {"requests": {"cpu": "x"}}}]}),
            f'spec.toolboxes[0].resources.requests.cpu: {QTY}, got "x"',
            id="toolbox-request",
        ),
        pytest.param(
            cs({"snapshotPolicy": 1}),
            "spec.snapshotPolicy: want string, got number 1",
            id="snapshot-policy",
        ),
        pytest.param(
            cs({"suspend": "true"}), "spec.suspend: want bool, got string", id="suspend-string"
        ),
        pytest.param(
            cs({"suspend": 1}), "spec.suspend: want bool, got number 1", id="suspend-number"
        ),
        pytest.param(cs({"nodePool": []}), "spec.nodePool: want string, got array", id="node-pool"),
        pytest.param(
            cs({"agent": {"backend": 1}}),
            "spec.agent.backend: want string, got number 1",
            id="agent-backend",
        ),
        pytest.param(
            cs({"agent": {"connType": True}}),
            "spec.agent.connType: want string, got bool",
            id="agent-conn-type",
        ),
        pytest.param(
            cs({"toolboxes": [{"backend": []}]}),
            "spec.toolboxes[0].backend: want string, got array",
            id="toolbox-backend",
        ),
        pytest.param(
            cs({"toolboxes": [{"connType": {}}]}),
            "spec.toolboxes[0].connType: want string, got object",
            id="toolbox-conn-type",
        ),
        pytest.param(
            cs({"hibernatePolicy": {}}),
            "spec.hibernatePolicy: want string, got object",
            id="hibernate-policy",
        ),
    ],
)
def test_decode_spec_rejects(obj: Any, reason: str) -> None:
    with pytest.raises(SpecDecodeError) as caught:
        decode_spec(obj)
    assert caught.value.reason == reason
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param({}, CocoonSetSpec(), id="spec-absent"),
        pytest.param(cs(None), CocoonSetSpec(), id="spec-null"),
        pytest.param(
            cs({"agent": None, "toolboxes": None, "suspend": None}),
            CocoonSetSpec(),
            id="nulls-are-absent",
        ),
        pytest.param(
            cs({"backend": 1, "connType": [], "agent": {"x": 1}, "toolboxes": [{"y": 2}]}),
            CocoonSetSpec(toolboxes=[ToolboxSpec()]),
            id="unknown-fields-ignored",
        ),
        pytest.param(
            cs({"hibernatePolicy": None, "agent": {"backend": None, "connType": None}}),
            CocoonSetSpec(),
            id="new-fields-null-are-absent",
        ),
    ],
)
def test_decode_spec_defaults(obj: Any, expected: CocoonSetSpec) -> None:
    assert decode_spec(obj) == expected


def test_decode_spec_reads_every_field() -> None:
    spec = decode_spec(
        cs(
            {
                "suspend": True,
                "snapshotPolicy": "main-only",
                "nodePool": "gpu",
                "hibernatePolicy": "retain",
                "agent": {
                    "image": "img",
                    "replicas": 2,
                    "mode": "run",
                    "os": "windows",
                    "backend": "firecracker",
                    "connType": "rdp",
                    "network": "net",
                    "nodePool": "p",
                    "vncPort": 5900,
                    "serviceAccountName": "sa",
                    "storage": " 100Gi\t",
                    "resources": {"limits": {"cpu": 2, "memory": None}, "requests": {"cpu": 0.5}},
                },
                "toolboxes": [
                    {
                        "name": "tb",
                        "image": "t",
                        "mode": "static",
                        "os": "android",
                        "backend": "cloud-hypervisor",
                        "connType": "adb",
                        "staticIP": "10.0.0.1",
                        "staticVMID": "vm-1",
                        "network": "n",
                        "vncPort": 5901,
                        "storage": 1e3,
                    },
                    None,
                ],
            }
        )
    )
    assert spec.suspend is True
    assert (spec.snapshot_policy, spec.node_pool) == ("main-only", "gpu")
    agent = spec.agent
    assert (agent.image, agent.replicas, agent.mode, agent.os) == ("img", 2, "run", "windows")
    assert (agent.network, agent.node_pool, agent.vnc_port) == ("net", "p", 5900)
    assert agent.service_account_name == "sa"
    assert (agent.backend, agent.conn_type, spec.hibernate_policy) == (
        "firecracker",
        "rdp",
        "retain",
    )
    # Go's Quantity.UnmarshalJSON trims white space before parsing.
    assert agent.storage == "100Gi"
    assert agent.resources.limits == {"cpu": "2", "memory": ""}
    assert agent.resources.requests == {"cpu": "0.5"}
    first, second = spec.toolboxes
    assert (first.name, first.image, first.mode, first.os) == ("tb", "t", "static", "android")
    assert (first.static_ip, first.static_vmid, first.network) == ("10.0.0.1", "vm-1", "n")
    assert (first.vnc_port, first.storage) == (5901, "1000.0")
    assert (first.backend, first.conn_type) == ("cloud-hypervisor", "adb")
    # A null element decodes to an empty toolbox, as encoding/json leaves a zero struct.
    assert second.name == ""


def test_field_names_are_not_aliases() -> None:
    # Only the wire (camelCase) names are read; snake_case keys are unknown fields.
    spec = decode_spec(cs({"snapshot_policy": 1, "agent": {"service_account_name": 1}}))
    assert spec == CocoonSetSpec()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    [
        "agent",
        "toolboxes",
        "image",
        "replicas",
        "mode",
        "os",
        "name",
        "storage",
        "resources",
        "limits",
        "requests",
        "cpu",
        "staticIP",
        "staticVMID",
        "vncPort",
        "suspend",
        "snapshotPolicy",
        "nodePool",
        "network",
        "serviceAccountName",
        "backend",
        "connType",
        "hibernatePolicy",
    ]
)
_shaped = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=30,
)


@given(st.one_of(_json, _shaped.map(cs), st.dictionaries(st.just("spec"), _shaped)))
def test_decode_only_raises_spec_decode_error(obj: Any) -> None:
    try:
        spec = decode_spec(obj)
    except SpecDecodeError as error:
        assert error.reason
        assert "\n" not in error.reason
    else:
        errors = spec_errors(spec)
        # Each rule names the field it is about, on one line.
        assert all(e.startswith("spec.") and "\n" not in e for e in errors), errors


@given(st.sampled_from(["CREATE", "UPDATE", "DELETE"]), _shaped.map(cs), _shaped.map(cs))
def test_decide_always_answers(operation: str, obj: Any, old: Any) -> None:
    verdict = decide(operation, obj, old)
    assert verdict.allowed or verdict.message.startswith("cocoon-webhook: ")
    if operation == "DELETE":
        assert verdict.allowed
    # An UPDATE that keeps the spec passes whatever the spec holds; one that changes it is judged
    # as a CREATE of the new object would be. (NaN cannot come in JSON, and equals nothing.)
    new_spec, old_spec = _canonical(obj.get("spec")), _canonical(old.get("spec"))
    if new_spec is not None:
        assert decide("UPDATE", obj, obj).allowed
    changed = obj.get("spec") != old.get("spec") and new_spec != old_spec
    if operation == "UPDATE" and None not in (new_spec, old_spec) and changed:
        assert verdict == decide("CREATE", obj, None)
    # A CREATE passes exactly when the spec decodes and breaks no rule.
    created = decide("CREATE", obj, None)
    try:
        spec = decode_spec(obj)
    except SpecDecodeError:
        assert not created.allowed
    else:
        assert created.allowed is (spec_errors(spec) == [])


def _canonical(value: Any) -> str | None:
    """JSON text to compare specs by; None for what JSON cannot carry (NaN, infinities)."""
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except ValueError:
        return None


# --- spec_errors ---------------------------------------------------------------------------------

AGENT = {"image": "img"}


def errors_of(spec: dict[str, Any]) -> list[str]:
    return spec_errors(decode_spec(cs(spec)))


@pytest.mark.parametrize(
    ("spec", "errors"),
    [
        pytest.param({"agent": AGENT}, [], id="minimal-valid"),
        pytest.param(
            {
                "agent": {"image": "i", "replicas": 3, "mode": "clone", "os": "android"},
                "toolboxes": [
                    {"name": "run", "image": "t", "mode": "run", "os": "linux"},
                    {"name": "clone", "image": "t", "mode": "clone", "os": "windows"},
                    {"name": "static", "mode": "static", "staticIP": "1.2.3.4", "staticVMID": "v"},
                ],
                "snapshotPolicy": "never",
            },
            [],
            id="full-valid",
        ),
        # A1
        pytest.param({}, ["spec.agent.image is required"], id="A1-image-absent"),
        pytest.param(
            {"agent": {"image": ""}}, ["spec.agent.image is required"], id="A1-image-empty"
        ),
        # A2
        pytest.param(
            {"agent": {"image": "i", "replicas": -1}},
            ["spec.agent.replicas must be >= 0, got -1"],
            id="A2-replicas-negative",
        ),
        pytest.param({"agent": {"image": "i", "replicas": 0}}, [], id="A2-replicas-zero"),
        # A3
        pytest.param(
            {"agent": {"image": "i", "mode": "static"}},
            ['spec.agent.mode must be clone or run, got "static"'],
            id="A3-mode",
        ),
        pytest.param(
            {"agent": {"image": "i", "mode": "Clone"}},
            ['spec.agent.mode must be clone or run, got "Clone"'],
            id="A3-mode-case-sensitive",
        ),
        pytest.param({"agent": {"image": "i", "mode": "run"}}, [], id="A3-mode-run"),
        # A4
        pytest.param(
            {"agent": {"image": "i", "os": "Linux"}},
            ['spec.agent.os must be linux, windows, android, or macos, got "Linux"'],
            id="A4-os-case-sensitive",
        ),
        pytest.param(
            {"agent": {"image": "i", "os": "mac\tos"}},
            ['spec.agent.os must be linux, windows, android, or macos, got "mac\\tos"'],
            id="A4-os-go-quoted",
        ),
        pytest.param({"agent": {"image": "i", "os": "android"}}, [], id="A4-android"),
        pytest.param(
            {"agent": {"replicas": -2, "mode": "x", "os": "y"}},
            [
                "spec.agent.image is required",
                "spec.agent.replicas must be >= 0, got -2",
                'spec.agent.mode must be clone or run, got "x"',
                'spec.agent.os must be linux, windows, android, or macos, got "y"',
            ],
            id="A1-A4-in-order",
        ),
        # T1
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"mode": "bogus", "os": "bogus"}]},
            ["spec.toolboxes[0].name is required"],
            id="T1-skips-other-checks",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": ""}, {"name": ""}]},
            ["spec.toolboxes[0].name is required", "spec.toolboxes[1].name is required"],
            id="T1-not-tracked-as-duplicate",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [None]},
            ["spec.toolboxes[0].name is required"],
            id="T1-null-toolbox",
        ),
        # T2
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "BadName_", "image": "t"}]},
            [f'spec.toolboxes[0].name "BadName_" must match RFC 1123 label: {BAD_CHARS}'],
            id="T2-bad-chars",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "a.b", "image": "t"}]},
            ['spec.toolboxes[0].name "a.b" must match RFC 1123 label: must not contain dots'],
            id="T2-dots",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "a" * 64, "image": "t"}]},
            [
                f'spec.toolboxes[0].name "{"a" * 64}" must match RFC 1123 label: '
                "must be no more than 63 characters"
            ],
            id="T2-too-long",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "A" * 64, "image": "t"}]},
            [
                f'spec.toolboxes[0].name "{"A" * 64}" must match RFC 1123 label: '
                f"must be no more than 63 characters; {BAD_CHARS}"
            ],
            id="T2-messages-joined",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": 'a"\n', "image": "t"}]},
            [f'spec.toolboxes[0].name "a\\"\\n" must match RFC 1123 label: {BAD_CHARS}'],
            id="T2-name-go-quoted",
        ),
        # T2a
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "0", "image": "t"}]},
            [
                'spec.toolboxes[0].name "0" must not be purely numeric '
                "(conflicts with agent slot naming)"
            ],
            id="T2a-numeric",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "1" * 64, "image": "t"}]},
            [
                f'spec.toolboxes[0].name "{"1" * 64}" must match RFC 1123 label: '
                "must be no more than 63 characters",
                f'spec.toolboxes[0].name "{"1" * 64}" must not be purely numeric '
                "(conflicts with agent slot naming)",
            ],
            id="T2-then-T2a",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "1a", "image": "t"}]},
            [],
            id="T2a-alphanumeric-ok",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "١", "image": "t"}]},
            [f'spec.toolboxes[0].name "١" must match RFC 1123 label: {BAD_CHARS}'],
            id="T2a-only-ascii-digits",
        ),
        # T3
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "tb", "image": "t"}] * 2},
            ['spec.toolboxes[1].name "tb" duplicates an earlier toolbox'],
            id="T3-duplicate",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "tb", "image": "t"}] * 3},
            [
                'spec.toolboxes[1].name "tb" duplicates an earlier toolbox',
                'spec.toolboxes[2].name "tb" duplicates an earlier toolbox',
            ],
            id="T3-three-give-two",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "a.b", "image": "t"}] * 2},
            [
                'spec.toolboxes[0].name "a.b" must match RFC 1123 label: must not contain dots',
                'spec.toolboxes[1].name "a.b" must match RFC 1123 label: must not contain dots',
                'spec.toolboxes[1].name "a.b" duplicates an earlier toolbox',
            ],
            id="T3-invalid-names-tracked",
        ),
        pytest.param(
            {
                "agent": AGENT,
                "toolboxes": [{"name": "tb", "image": "t"}, {"name": "TB", "image": "t"}],
            },
            [f'spec.toolboxes[1].name "TB" must match RFC 1123 label: {BAD_CHARS}'],
            id="T3-case-sensitive",
        ),
        # T4
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "tb", "image": "t", "mode": "Run"}]},
            ['spec.toolboxes[0].mode must be run, clone, or static, got "Run"'],
            id="T4-mode",
        ),
        # T5
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "tb", "image": "t", "os": "bsd"}]},
            ['spec.toolboxes[0].os must be linux, windows, android, or macos, got "bsd"'],
            id="T5-os",
        ),
        # T6, T7
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "tb", "mode": "static", "staticVMID": "v"}]},
            ["spec.toolboxes[0].staticIP is required when mode=static"],
            id="T6-static-ip",
        ),
        pytest.param(
            {
                "agent": AGENT,
                "toolboxes": [{"name": "tb", "mode": "static", "staticIP": "1.2.3.4"}],
            },
            ["spec.toolboxes[0].staticVMID is required when mode=static"],
            id="T7-static-vmid",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "tb", "mode": "static"}]},
            [
                "spec.toolboxes[0].staticIP is required when mode=static",
                "spec.toolboxes[0].staticVMID is required when mode=static",
            ],
            id="T6-T7-static-needs-no-image",
        ),
        # T8
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "tb"}]},
            ["spec.toolboxes[0].image is required when mode is run or clone"],
            id="T8-mode-empty",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "tb", "mode": "clone"}]},
            ["spec.toolboxes[0].image is required when mode is run or clone"],
            id="T8-mode-clone",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "tb", "mode": "bad"}]},
            [
                'spec.toolboxes[0].mode must be run, clone, or static, got "bad"',
                "spec.toolboxes[0].image is required when mode is run or clone",
            ],
            id="T8-invalid-mode-too",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "tb", "mode": "Static"}]},
            [
                'spec.toolboxes[0].mode must be run, clone, or static, got "Static"',
                "spec.toolboxes[0].image is required when mode is run or clone",
            ],
            id="T8-static-is-case-sensitive",
        ),
        pytest.param(
            {
                "agent": AGENT,
                "toolboxes": [
                    {"name": "tb", "image": "t"},
                    {"name": "tb", "mode": "static", "os": "x", "staticIP": ""},
                ],
            },
            [
                'spec.toolboxes[1].name "tb" duplicates an earlier toolbox',
                'spec.toolboxes[1].os must be linux, windows, android, or macos, got "x"',
                "spec.toolboxes[1].staticIP is required when mode=static",
                "spec.toolboxes[1].staticVMID is required when mode=static",
            ],
            id="T-per-toolbox-order",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "9", "mode": "x", "os": "y"}, {"name": "9"}]},
            [
                'spec.toolboxes[0].name "9" must not be purely numeric '
                "(conflicts with agent slot naming)",
                'spec.toolboxes[0].mode must be run, clone, or static, got "x"',
                'spec.toolboxes[0].os must be linux, windows, android, or macos, got "y"',
                "spec.toolboxes[0].image is required when mode is run or clone",
                'spec.toolboxes[1].name "9" must not be purely numeric '
                "(conflicts with agent slot naming)",
                'spec.toolboxes[1].name "9" duplicates an earlier toolbox',
                "spec.toolboxes[1].image is required when mode is run or clone",
            ],
            id="T-toolboxes-in-index-order",
        ),
        # S1
        pytest.param(
            {"agent": AGENT, "snapshotPolicy": "sometimes"},
            ['spec.snapshotPolicy must be always, main-only, or never, got "sometimes"'],
            id="S1-snapshot-policy",
        ),
        pytest.param(
            {"agent": AGENT, "snapshotPolicy": "main_only"},
            ['spec.snapshotPolicy must be always, main-only, or never, got "main_only"'],
            id="S1-exact-spelling",
        ),
        pytest.param({"agent": AGENT, "snapshotPolicy": "always"}, [], id="S1-always"),
        pytest.param(
            {"agent": {}, "toolboxes": [{}], "snapshotPolicy": "x"},
            [
                "spec.agent.image is required",
                "spec.toolboxes[0].name is required",
                'spec.snapshotPolicy must be always, main-only, or never, got "x"',
            ],
            id="A-then-T-then-S",
        ),
    ],
)
def test_spec_errors(spec: dict[str, Any], errors: list[str]) -> None:
    assert errors_of(spec) == errors


# --- issue 15: backend, connType, hibernatePolicy, macOS, clone images ------------------------


@pytest.mark.parametrize(
    ("image", "valid"),
    [
        # The pinned examples.
        pytest.param("ubuntu:24.04", True, id="repo-and-tag"),
        pytest.param("team/agent", True, id="path-without-tag"),
        pytest.param("ghcr.io/x/agent:1", True, id="host-without-port-is-a-path"),
        pytest.param("registry:5000/agent", False, id="registry-port"),
        pytest.param("localhost:5000/a:1", False, id="registry-port-and-tag"),
        pytest.param("agent@sha256:abc", False, id="digest"),
        pytest.param("Agent:1", False, id="upper-case-repo"),
        pytest.param(":tag", False, id="empty-repo"),
        pytest.param("agent:", False, id="empty-tag"),
        # The grammar's edges.
        pytest.param("agent", True, id="bare-name"),
        pytest.param("a_b__c-d---e.f/g:V1.0-rc_1", True, id="separators"),
        pytest.param("a:" + "T" * 128, True, id="tag-128-chars"),
        pytest.param("a:" + "T" * 129, False, id="tag-129-chars"),
        pytest.param("a:_x", True, id="tag-leading-underscore"),
        pytest.param("a:.x", False, id="tag-leading-dot"),
        pytest.param("a:-x", False, id="tag-leading-hyphen"),
        pytest.param("a:1:2", False, id="second-colon"),
        pytest.param("a___b", False, id="three-underscores"),
        pytest.param("a..b", False, id="two-dots"),
        pytest.param("a//b", False, id="empty-path-component"),
        pytest.param("-a", False, id="leading-separator"),
        pytest.param("a-", False, id="trailing-separator"),
        pytest.param("/a", False, id="leading-slash"),
        pytest.param("agent\n", False, id="trailing-newline"),
        pytest.param("agent:1\n", False, id="tag-trailing-newline"),
        pytest.param("https://h/img", False, id="url"),
        pytest.param("", False, id="empty"),
    ],
)
def test_is_repo_tag(image: str, valid: bool) -> None:
    assert is_repo_tag(image) is valid


FC = "firecracker"
CH = "cloud-hypervisor"
FC_AGENT = {"image": "img", "backend": FC, "mode": "run"}
STATIC_TB = {"name": "tb", "mode": "static", "staticIP": "10.0.0.9", "staticVMID": "vm-9"}
I1_AGENT = (
    'spec.agent.image "registry:5000/agent" must be repo[:tag] when mode is clone '
    "(no registry port or digest)"
)


@pytest.mark.parametrize(
    ("spec", "errors"),
    [
        # A4/T5: macOS joins the guests.
        pytest.param({"agent": {"image": "i", "os": "macos"}}, [], id="A4-macos"),
        pytest.param(
            {"agent": {"image": "i", "os": "macOS"}},
            ['spec.agent.os must be linux, windows, android, or macos, got "macOS"'],
            id="A4-macos-case-sensitive",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "tb", "image": "t", "os": "macos"}]},
            [],
            id="T5-macos",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{**STATIC_TB, "os": "darwin"}]},
            ['spec.toolboxes[0].os must be linux, windows, android, or macos, got "darwin"'],
            id="T5-static-too",
        ),
        # C1
        *[
            pytest.param({"agent": {"image": "i", "connType": c}}, [], id=f"C1-{c}")
            for c in ("ssh", "rdp", "vnc", "adb")
        ],
        pytest.param(
            {"agent": {"image": "i", "connType": "SSH"}},
            ['spec.agent.connType must be ssh, rdp, vnc, or adb, got "SSH"'],
            id="C1-agent-case-sensitive",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "tb", "image": "t", "connType": "tel\nnet"}]},
            ['spec.toolboxes[0].connType must be ssh, rdp, vnc, or adb, got "tel\\nnet"'],
            id="C1-toolbox-go-quoted",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{**STATIC_TB, "connType": "spice"}]},
            ['spec.toolboxes[0].connType must be ssh, rdp, vnc, or adb, got "spice"'],
            id="C1-static-toolbox-too",
        ),
        # B1
        pytest.param({"agent": {"image": "i", "backend": CH}}, [], id="B1-cloud-hypervisor"),
        pytest.param({"agent": FC_AGENT}, [], id="B1-firecracker-run"),
        pytest.param(
            {"agent": {"image": "i", "backend": "qemu"}},
            ['spec.agent.backend must be cloud-hypervisor or firecracker, got "qemu"'],
            id="B1-agent",
        ),
        pytest.param(
            {"agent": {"image": "i", "backend": "Firecracker", "mode": "run", "os": "windows"}},
            ['spec.agent.backend must be cloud-hypervisor or firecracker, got "Firecracker"'],
            id="B1-case-sensitive-and-not-firecracker",
        ),
        # B2
        pytest.param(
            {"agent": {**FC_AGENT, "os": "windows"}},
            ["spec.agent: firecracker does not support Windows guests"],
            id="B2-agent",
        ),
        pytest.param(
            {"agent": {"image": "i", "os": "windows", "backend": CH}}, [], id="B2-ch-windows"
        ),
        pytest.param({"agent": {**FC_AGENT, "os": "android"}}, [], id="B2-only-windows"),
        pytest.param({"agent": {**FC_AGENT, "os": "macos"}}, [], id="B2-macos-allowed"),
        # B3
        pytest.param(
            {"agent": {**FC_AGENT, "image": "https://cloud.example/jammy.img"}},
            [
                "spec.agent: firecracker requires an OCI image, cloudimg URLs are not supported "
                '(got "https://cloud.example/jammy.img")'
            ],
            id="B3-https",
        ),
        pytest.param(
            {"agent": {**FC_AGENT, "image": "http://h/a.img"}},
            [
                "spec.agent: firecracker requires an OCI image, cloudimg URLs are not supported "
                '(got "http://h/a.img")'
            ],
            id="B3-http",
        ),
        pytest.param(
            {"agent": {"image": "https://h/a.img", "mode": "run"}}, [], id="B3-ch-takes-urls"
        ),
        pytest.param(
            {"agent": {**FC_AGENT, "image": "registry:5000/a"}}, [], id="B3-port-is-no-url"
        ),
        # B4
        pytest.param(
            {"agent": {"image": "img", "backend": FC}},
            ["spec.agent: firecracker does not support clone mode, use mode=run instead"],
            id="B4-agent-default-mode-is-clone",
        ),
        pytest.param(
            {"agent": {"image": "img", "backend": FC, "mode": "clone"}},
            ["spec.agent: firecracker does not support clone mode, use mode=run instead"],
            id="B4-agent-clone",
        ),
        pytest.param(
            {"agent": FC_AGENT, "toolboxes": [{"name": "tb", "image": "t", "backend": FC}]},
            [],
            id="B4-toolbox-default-mode-is-run",
        ),
        pytest.param(
            {
                "agent": FC_AGENT,
                "toolboxes": [{"name": "tb", "image": "t", "backend": FC, "mode": "clone"}],
            },
            ["spec.toolboxes[0]: firecracker does not support clone mode, use mode=run instead"],
            id="B4-toolbox-clone",
        ),
        pytest.param(
            {"agent": {"image": "img", "backend": FC, "mode": "snap"}},
            [
                'spec.agent.mode must be clone or run, got "snap"',
                "spec.agent: firecracker does not support snap mode, use mode=run instead",
            ],
            id="B4-invalid-mode-named-as-is",
        ),
        # B5
        pytest.param(
            {"agent": FC_AGENT, "toolboxes": [{"name": "tb", "image": "t"}]},
            [
                'spec.toolboxes[0].backend "cloud-hypervisor" must match spec.agent.backend '
                '"firecracker"'
            ],
            id="B5-toolbox-default-backend",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "tb", "image": "t", "backend": FC}]},
            [
                'spec.toolboxes[0].backend "firecracker" must match spec.agent.backend '
                '"cloud-hypervisor"'
            ],
            id="B5-agent-default-backend",
        ),
        pytest.param(
            {"agent": {"image": "i", "backend": CH}, "toolboxes": [{"name": "t", "image": "t"}]},
            [],
            id="B5-explicit-equals-default",
        ),
        pytest.param(
            {"agent": {"image": "i", "backend": "kvm"}, "toolboxes": [{"name": "t", "image": "t"}]},
            [
                'spec.agent.backend must be cloud-hypervisor or firecracker, got "kvm"',
                'spec.toolboxes[0].backend "cloud-hypervisor" must match spec.agent.backend "kvm"',
            ],
            id="B5-against-an-invalid-agent-backend",
        ),
        # I1
        pytest.param({"agent": {"image": "registry:5000/agent"}}, [I1_AGENT], id="I1-default-mode"),
        pytest.param(
            {"agent": {"image": "registry:5000/agent", "mode": "clone"}}, [I1_AGENT], id="I1-clone"
        ),
        pytest.param(
            {"agent": {"image": "registry:5000/agent", "mode": "run"}}, [], id="I1-run-any-image"
        ),
        pytest.param({"agent": {"image": ""}}, ["spec.agent.image is required"], id="I1-not-empty"),
        pytest.param(
            {"agent": {"image": "https://h/a.img"}},
            [
                'spec.agent.image "https://h/a.img" must be repo[:tag] when mode is clone '
                "(no registry port or digest)"
            ],
            id="I1-url-cannot-be-cloned",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "tb", "image": "a@sha256:1", "mode": "clone"}]},
            [
                'spec.toolboxes[0].image "a@sha256:1" must be repo[:tag] when mode is clone '
                "(no registry port or digest)"
            ],
            id="I1-toolbox-clone",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "tb", "image": "a@sha256:1"}]},
            [],
            id="I1-toolbox-default-mode-is-run",
        ),
        # H1
        pytest.param({"agent": AGENT, "hibernatePolicy": "retain"}, [], id="H1-retain"),
        pytest.param({"agent": AGENT, "hibernatePolicy": "release"}, [], id="H1-release"),
        pytest.param(
            {"agent": AGENT, "hibernatePolicy": "Retain"},
            ['spec.hibernatePolicy must be retain or release, got "Retain"'],
            id="H1-case-sensitive",
        ),
        # Static toolboxes run no hypervisor: B1-B5, I1 and T8 do not apply; C1, T6, T7 do.
        pytest.param(
            {
                "agent": FC_AGENT,
                "toolboxes": [
                    {
                        **STATIC_TB,
                        "backend": "qemu",
                        "os": "windows",
                        "image": "https://h/a.img",
                        "connType": "rdp",
                    }
                ],
            },
            [],
            id="static-skips-B-and-I",
        ),
        pytest.param(
            {
                "agent": FC_AGENT,
                "toolboxes": [{"name": "tb", "mode": "static", "backend": CH, "connType": "x"}],
            },
            [
                "spec.toolboxes[0].staticIP is required when mode=static",
                "spec.toolboxes[0].staticVMID is required when mode=static",
                'spec.toolboxes[0].connType must be ssh, rdp, vnc, or adb, got "x"',
            ],
            id="static-T1-T7-then-C1",
        ),
        pytest.param(
            {
                "agent": FC_AGENT,
                "toolboxes": [{"name": "tb", "image": "t", "mode": "Static", "connType": "rdp"}],
            },
            [
                'spec.toolboxes[0].mode must be run, clone, or static, got "Static"',
                'spec.toolboxes[0].backend "cloud-hypervisor" must match spec.agent.backend '
                '"firecracker"',
            ],
            id="invalid-static-spelling-is-not-static",
        ),
        # Ordering and combinations.
        pytest.param(
            {
                "agent": {
                    "image": "https://h:5000/img",
                    "replicas": -1,
                    "mode": "clone",
                    "os": "windows",
                    "connType": "telnet",
                    "backend": FC,
                }
            },
            [
                "spec.agent.replicas must be >= 0, got -1",
                'spec.agent.connType must be ssh, rdp, vnc, or adb, got "telnet"',
                "spec.agent: firecracker does not support Windows guests",
                "spec.agent: firecracker requires an OCI image, cloudimg URLs are not supported "
                '(got "https://h:5000/img")',
                "spec.agent: firecracker does not support clone mode, use mode=run instead",
                'spec.agent.image "https://h:5000/img" must be repo[:tag] when mode is clone '
                "(no registry port or digest)",
            ],
            id="agent-A-C1-B2-B3-B4-I1",
        ),
        pytest.param(
            {"agent": {"image": "a@sha256:x", "os": "bsd", "connType": "x", "backend": "qemu"}},
            [
                'spec.agent.os must be linux, windows, android, or macos, got "bsd"',
                'spec.agent.connType must be ssh, rdp, vnc, or adb, got "x"',
                'spec.agent.backend must be cloud-hypervisor or firecracker, got "qemu"',
                'spec.agent.image "a@sha256:x" must be repo[:tag] when mode is clone '
                "(no registry port or digest)",
            ],
            id="agent-A4-C1-B1-I1",
        ),
        pytest.param(
            {
                "agent": AGENT,
                "toolboxes": [
                    {
                        "name": "9",
                        "mode": "clone",
                        "os": "windows",
                        "connType": "x",
                        "backend": FC,
                        "image": "http://h/img",
                    }
                ],
            },
            [
                'spec.toolboxes[0].name "9" must not be purely numeric '
                "(conflicts with agent slot naming)",
                'spec.toolboxes[0].connType must be ssh, rdp, vnc, or adb, got "x"',
                "spec.toolboxes[0]: firecracker does not support Windows guests",
                "spec.toolboxes[0]: firecracker requires an OCI image, cloudimg URLs are not "
                'supported (got "http://h/img")',
                'spec.toolboxes[0].backend "firecracker" must match spec.agent.backend '
                '"cloud-hypervisor"',
                "spec.toolboxes[0]: firecracker does not support clone mode, use mode=run instead",
                'spec.toolboxes[0].image "http://h/img" must be repo[:tag] when mode is clone '
                "(no registry port or digest)",
            ],
            id="toolbox-T-C1-B2-B3-B5-B4-I1",
        ),
        pytest.param(
            {"agent": AGENT, "toolboxes": [{"name": "tb", "connType": "x", "backend": "qemu"}]},
            [
                "spec.toolboxes[0].image is required when mode is run or clone",
                'spec.toolboxes[0].connType must be ssh, rdp, vnc, or adb, got "x"',
                'spec.toolboxes[0].backend must be cloud-hypervisor or firecracker, got "qemu"',
                'spec.toolboxes[0].backend "qemu" must match spec.agent.backend "cloud-hypervisor"',
            ],
            id="toolbox-T8-C1-B1-B5",
        ),
        pytest.param(
            {
                "agent": {"image": "img", "connType": "x"},
                "toolboxes": [
                    {"name": "tb", "image": "t", "connType": "y"},
                    {"name": "", "connType": "z", "backend": FC},
                ],
                "snapshotPolicy": "s",
                "hibernatePolicy": "h",
            },
            [
                'spec.agent.connType must be ssh, rdp, vnc, or adb, got "x"',
                'spec.toolboxes[0].connType must be ssh, rdp, vnc, or adb, got "y"',
                "spec.toolboxes[1].name is required",
                'spec.snapshotPolicy must be always, main-only, or never, got "s"',
                'spec.hibernatePolicy must be retain or release, got "h"',
            ],
            id="agent-toolboxes-S1-H1-and-T1-still-skips",
        ),
    ],
)
def test_backend_and_image_rules(spec: dict[str, Any], errors: list[str]) -> None:
    assert errors_of(spec) == errors


def test_new_rules_reach_the_denial() -> None:
    verdict = decide("CREATE", cs({"agent": {"image": "img", "backend": FC}}), None)
    assert verdict == Verdict(
        False,
        Decision.DENY,
        "cocoon-webhook: invalid CocoonSet spec: "
        "spec.agent: firecracker does not support clone mode, use mode=run instead",
    )


# --- decide ---------------------------------------------------------------------------------------

VALID = cs({"agent": AGENT})
INVALID = cs({"agent": {"replicas": -1}})
UNDECODABLE = cs({"agent": {"replicas": "x"}})


@pytest.mark.parametrize(
    ("operation", "obj", "old", "verdict"),
    [
        # Row 1
        pytest.param("DELETE", None, INVALID, Verdict(True, Decision.ALLOW), id="1-delete"),
        pytest.param("CONNECT", UNDECODABLE, None, Verdict(True, Decision.ALLOW), id="1-connect"),
        pytest.param(
            "create", INVALID, None, Verdict(True, Decision.ALLOW), id="1-operation-case-sensitive"
        ),
        # Row 2
        pytest.param(
            "UPDATE",
            {**INVALID, "metadata": {"finalizers": []}},
            INVALID,
            Verdict(True, Decision.ALLOW),
            id="2-spec-unchanged-skips-rules",
        ),
        pytest.param(
            "UPDATE",
            UNDECODABLE,
            UNDECODABLE,
            Verdict(True, Decision.ALLOW),
            id="2-unchanged-even-undecodable",
        ),
        pytest.param(
            "UPDATE",
            {"kind": "CocoonSet"},
            {"metadata": {}},
            Verdict(True, Decision.ALLOW),
            id="2-both-absent",
        ),
        pytest.param("UPDATE", cs(None), {}, Verdict(True, Decision.ALLOW), id="2-null-and-absent"),
        pytest.param(
            "UPDATE",
            cs({"agent": {"replicas": 1, "image": ""}}),
            cs({"agent": {"replicas": True, "image": ""}}),
            Verdict(
                False,
                Decision.DENY,
                "cocoon-webhook: invalid CocoonSet spec: spec.agent.image is required",
            ),
            id="2-true-is-not-one",
        ),
        pytest.param(
            "CREATE",
            INVALID,
            INVALID,
            Verdict(
                False,
                Decision.DENY,
                "cocoon-webhook: invalid CocoonSet spec: spec.agent.image is "
                "required; spec.agent.replicas must be >= 0, got -1",
            ),
            id="2-only-for-update",
        ),
        # Row 3
        pytest.param(
            "CREATE",
            None,
            None,
            Verdict(False, Decision.ERROR, "cocoon-webhook: decode CocoonSet: object is missing"),
            id="3-object-missing",
        ),
        pytest.param(
            "UPDATE",
            None,
            None,
            Verdict(False, Decision.ERROR, "cocoon-webhook: decode CocoonSet: object is missing"),
            id="3-update-object-missing",
        ),
        pytest.param(
            "UPDATE",
            None,
            VALID,
            Verdict(False, Decision.ERROR, "cocoon-webhook: decode CocoonSet: object is missing"),
            id="3-update-object-missing-old-present",
        ),
        pytest.param(
            "CREATE",
            UNDECODABLE,
            None,
            Verdict(
                False,
                Decision.ERROR,
                "cocoon-webhook: decode CocoonSet: "
                "spec.agent.replicas: want int32 integer, got string",
            ),
            id="3-undecodable",
        ),
        pytest.param(
            "UPDATE",
            UNDECODABLE,
            VALID,
            Verdict(
                False,
                Decision.ERROR,
                "cocoon-webhook: decode CocoonSet: "
                "spec.agent.replicas: want int32 integer, got string",
            ),
            id="3-update-undecodable",
        ),
        pytest.param(
            "UPDATE",
            "oops",
            "oops",
            Verdict(
                False,
                Decision.ERROR,
                "cocoon-webhook: decode CocoonSet: object: want object, got string",
            ),
            id="3-non-object-not-compared",
        ),
        # Row 4
        pytest.param(
            "CREATE",
            INVALID,
            None,
            Verdict(
                False,
                Decision.DENY,
                "cocoon-webhook: invalid CocoonSet spec: spec.agent.image is "
                "required; spec.agent.replicas must be >= 0, got -1",
            ),
            id="4-create-invalid",
        ),
        pytest.param(
            "UPDATE",
            INVALID,
            VALID,
            Verdict(
                False,
                Decision.DENY,
                "cocoon-webhook: invalid CocoonSet spec: spec.agent.image is "
                "required; spec.agent.replicas must be >= 0, got -1",
            ),
            id="4-update-invalid",
        ),
        pytest.param(
            "UPDATE",
            VALID,
            None,
            Verdict(True, Decision.ALLOW),
            id="4-update-without-old-validates",
        ),
        pytest.param(
            "UPDATE",
            cs({}),
            None,
            Verdict(
                False,
                Decision.DENY,
                "cocoon-webhook: invalid CocoonSet spec: spec.agent.image is required",
            ),
            id="4-update-without-old-denies",
        ),
        # Row 5
        pytest.param("CREATE", VALID, None, Verdict(True, Decision.ALLOW), id="5-create-valid"),
        pytest.param(
            "UPDATE",
            cs({"agent": {"image": "new"}}),
            VALID,
            Verdict(True, Decision.ALLOW),
            id="5-update-valid",
        ),
    ],
)
def test_decide(operation: str, obj: Any, old: Any, verdict: Verdict) -> None:
    assert decide(operation, obj, old) == verdict
