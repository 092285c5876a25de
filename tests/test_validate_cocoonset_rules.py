"""validate_cocoonset (SPEC 7): Go quoting, RFC 1123 messages, decoding, rules and the row table."""

from __future__ import annotations

import ast
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
    decide,
    decode_spec,
    go_quote,
    is_dns1123_subdomain,
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

# --- go_quote -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        pytest.param("", '""', id="empty"),
        pytest.param("tb", '"tb"', id="plain"),
        pytest.param('a"b', '"a\\"b"', id="double-quote"),
        pytest.param("a\\b", '"a\\\\b"', id="backslash"),
        pytest.param("it's", '"it\'s"', id="single-quote-kept"),
        pytest.param("\a\b\f\n\r\t\v", '"\\a\\b\\f\\n\\r\\t\\v"', id="named-escapes"),
        pytest.param("\x00", '"\\x00"', id="nul"),
        pytest.param("\x1b", '"\\x1b"', id="escape-char"),
        pytest.param("\x7f", '"\\x7f"', id="del"),
        pytest.param("\x85", '"\\u0085"', id="c1-control"),
        pytest.param("\xa0", '"\\u00a0"', id="no-break-space"),
        pytest.param("\u200b", '"\\u200b"', id="zero-width-space"),
        pytest.param("\u2028", '"\\u2028"', id="line-separator"),
        pytest.param("\ue000", '"\\ue000"', id="private-use"),
        pytest.param("\U000e0001", '"\\U000e0001"', id="astral-format-char"),
        pytest.param("\U0010ffff", '"\\U0010ffff"', id="astral-unassigned"),
        pytest.param("é Linux", '"é Linux"', id="printable-non-ascii"),
        pytest.param("名前", '"名前"', id="cjk"),
        pytest.param("😀", '"😀"', id="emoji"),
        pytest.param("\ud800", '"\ufffd"', id="lone-surrogate-as-go-json-decodes-it"),
        pytest.param("\ufffd", '"\ufffd"', id="replacement-char"),
    ],
)
def test_go_quote(value: str, quoted: str) -> None:
    assert go_quote(value) == quoted


@given(st.text(st.characters(exclude_categories=["Cs"])))
def test_go_quote_reads_back_as_the_same_string(value: str) -> None:
    # Every escape Go's %q emits means the same thing in a Python string literal.
    quoted = go_quote(value)
    assert "\n" not in quoted
    assert ast.literal_eval(quoted) == value


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


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        pytest.param("example.com", True, id="dotted"),
        pytest.param("a", True, id="single-label"),
        pytest.param("a" * 253, True, id="253-chars"),
        pytest.param("a" * 254, False, id="254-chars"),
        pytest.param("Example.com", False, id="upper-case"),
        pytest.param("a..b", False, id="empty-label"),
        pytest.param("a.-b", False, id="label-leading-hyphen"),
        pytest.param("", False, id="empty"),
        pytest.param("a.", False, id="trailing-dot"),
    ],
)
def test_is_dns1123_subdomain(value: str, valid: bool) -> None:
    assert is_dns1123_subdomain(value) is valid


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
            cs({"backend": 1, "connType": [], "hibernatePolicy": {}, "agent": {"x": 1}}),
            CocoonSetSpec(),
            id="unknown-fields-ignored",
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
                "agent": {
                    "image": "img",
                    "replicas": 2,
                    "mode": "run",
                    "os": "windows",
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
    # Go's Quantity.UnmarshalJSON trims white space before parsing.
    assert agent.storage == "100Gi"
    assert agent.resources.limits == {"cpu": "2", "memory": ""}
    assert agent.resources.requests == {"cpu": "0.5"}
    first, second = spec.toolboxes
    assert (first.name, first.image, first.mode, first.os) == ("tb", "t", "static", "android")
    assert (first.static_ip, first.static_vmid, first.network) == ("10.0.0.1", "vm-1", "n")
    assert (first.vnc_port, first.storage) == (5901, "1000.0")
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
            ['spec.agent.os must be linux, windows, or android, got "Linux"'],
            id="A4-os-case-sensitive",
        ),
        pytest.param(
            {"agent": {"image": "i", "os": "mac\tos"}},
            ['spec.agent.os must be linux, windows, or android, got "mac\\tos"'],
            id="A4-os-go-quoted",
        ),
        pytest.param({"agent": {"image": "i", "os": "android"}}, [], id="A4-android"),
        pytest.param(
            {"agent": {"replicas": -2, "mode": "x", "os": "y"}},
            [
                "spec.agent.image is required",
                "spec.agent.replicas must be >= 0, got -2",
                'spec.agent.mode must be clone or run, got "x"',
                'spec.agent.os must be linux, windows, or android, got "y"',
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
            ['spec.toolboxes[0].os must be linux, windows, or android, got "bsd"'],
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
                'spec.toolboxes[1].os must be linux, windows, or android, got "x"',
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
                'spec.toolboxes[0].os must be linux, windows, or android, got "y"',
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
