"""Hostile bodies on every entry point: too deep, too wide, oddly encoded, huge scalars.

Every function target (and, in test_server_bounds.py, the standalone server) must answer with
a verdict or a one-line 4xx: a 5xx or a traceback is a bug. The depth bound is checked where
the spec puts it, before any recursive code runs.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from common import strict_json
from common.strict_json import MAX_DEPTH, nesting_exceeds
from tests.cluster import cocoon_pod
from tests.functions_app import function_client
from tests.helpers import review, workload

ADMISSION = {
    "validate": "/validate",
    "validate_cocoonset": "/validate-cocoonset",
    "mutate": "/mutate",
    "validate_cocoonhibernation": "/validate-cocoonhibernation",
}
CLOUDEVENT = {
    "ce-specversion": "1.0",
    "ce-id": "hostile-1",
    "ce-source": "test",
    "ce-type": "dev.cocoonstack.reaper.tick",
}
TOO_DEEP = f"JSON nested deeper than {MAX_DEPTH} levels"


def nested(depth: int, *, leaf: Any = 1, kind: str = "[") -> str:
    """`depth` levels of arrays (`[`) or objects (`{`) around `leaf`, as JSON text."""
    inner = json.dumps(leaf)
    if kind == "[":
        return "[" * depth + inner + "]" * depth
    return '{"a":' * depth + inner + "}" * depth


def review_with(field: str, raw: str) -> bytes:
    """A valid review whose `request.<field>` is the raw JSON text `raw`."""
    body = json.dumps(review(workload(1), workload(3), uid="u"))
    marker = '"__RAW__"'
    doc = json.loads(body)
    doc["request"][field] = "__RAW__"
    return json.dumps(doc).replace(marker, raw, 1).encode()


# --- the pre-scan itself -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["[", "{"])
def test_depth_at_the_limit_passes_one_more_fails(kind: str) -> None:
    assert not nesting_exceeds(nested(MAX_DEPTH, kind=kind))
    assert nesting_exceeds(nested(MAX_DEPTH + 1, kind=kind))
    assert strict_json.loads(nested(MAX_DEPTH, kind=kind)) is not None
    with pytest.raises(strict_json.TooDeep, match=TOO_DEEP):
        strict_json.loads(nested(MAX_DEPTH + 1, kind=kind))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(json.dumps(["[" * 1000, "{" * 1000]), id="brackets-in-strings"),
        pytest.param(json.dumps(['\\"' + "[" * 1000, "\\" * 7 + "[" * 600]),
                     id="escaped-quotes-and-backslashes"),
        pytest.param(json.dumps([[]] * 2000), id="wide-not-deep"),
        pytest.param(json.dumps({str(i): {"x": [i]} for i in range(1000)}), id="wide-objects"),
    ],
)  # fmt: skip
def test_brackets_that_do_not_nest_do_not_count(text: str) -> None:
    assert not nesting_exceeds(text)
    assert strict_json.loads(text) == json.loads(text)


def test_closing_brackets_are_counted() -> None:
    # Many shallow siblings interleaved with one deep branch: only the branch matters.
    siblings = ",".join(["[[1]]"] * 500)
    assert not nesting_exceeds(f"[{siblings},{nested(MAX_DEPTH - 1)}]")
    assert nesting_exceeds(f"[{siblings},{nested(MAX_DEPTH)}]")


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6),
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
            st.text(alphabet='[]{}"\\', max_size=3), kids, max_size=3),
        max_leaves=40,
    ),
    st.integers(min_value=0, max_value=8),
)  # fmt: skip
def test_scan_agrees_with_the_real_depth(document: Any, limit: int) -> None:
    def depth(value: Any) -> int:
        if isinstance(value, list):
            return 1 + max((depth(v) for v in value), default=0)
        if isinstance(value, dict):
            return 1 + max((depth(v) for v in value.values()), default=0)
        return 0

    assert nesting_exceeds(json.dumps(document), limit) == (depth(document) > limit)


# --- every function target -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def clients(kube_emulator: Any) -> Iterator[dict[str, TestClient]]:
    env = {"KUBECONFIG": kube_emulator.kubeconfig, "MUTATE_DEADLINE": "1s"}
    with (
        function_client("validate", **env) as validate,
        function_client("validate_cocoonset", **env) as cocoonset,
        function_client("mutate", **env) as mutate,
        function_client("reap", **env) as reap,
        function_client("validate_cocoonhibernation", **env) as hibernation,
    ):
        yield {"validate": validate, "validate_cocoonset": cocoonset, "mutate": mutate,
               "reap": reap, "validate_cocoonhibernation": hibernation}  # fmt: skip


def check_reply(response: Any) -> None:
    """A verdict, or a one-line client error: never a 5xx, never a traceback."""
    assert response.status_code in (200, 400, 413), (response.status_code, response.text[:300])
    if response.status_code != 200:
        assert response.text and "\n" not in response.text
        assert "Traceback" not in response.text
        return
    document = response.json()
    assert document["kind"] == "AdmissionReview"
    assert isinstance(document["response"]["allowed"], bool)


@pytest.mark.parametrize("target", sorted(ADMISSION))
@pytest.mark.parametrize("field", ["object", "oldObject", "uid", "kind", "name"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000, 100_000])
def test_too_deep_is_400_with_one_line(
    clients: dict[str, TestClient], target: str, field: str, depth: int
) -> None:
    reply = clients[target].post(ADMISSION[target], content=review_with(field, nested(depth)))
    assert (reply.status_code, reply.text) == (400, f"decode admission review: {TOO_DEEP}")


@pytest.mark.parametrize("target", sorted(ADMISSION))
def test_whole_body_too_deep(clients: dict[str, TestClient], target: str) -> None:
    reply = clients[target].post(ADMISSION[target], content=nested(20_000, kind="{").encode())
    assert (reply.status_code, reply.text) == (400, f"decode admission review: {TOO_DEEP}")


@pytest.mark.parametrize("target", sorted(ADMISSION))
@pytest.mark.parametrize("field", ["object", "oldObject", "kind", "uid", "dryRun"])
def test_depth_at_the_limit_gets_a_verdict(
    clients: dict[str, TestClient], target: str, field: str
) -> None:
    # The envelope adds two levels around request.<field>: this is as deep as a body may be.
    body = review_with(field, nested(MAX_DEPTH - 2, kind="{"))
    check_reply(clients[target].post(ADMISSION[target], content=body))


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({**CLOUDEVENT, "content-type": "application/json"}, id="binary"),
        pytest.param({"content-type": "application/cloudevents+json"}, id="structured"),
    ],
)
def test_reap_refuses_deep_events(clients: dict[str, TestClient], headers: dict[str, str]) -> None:
    body = nested(5000, kind="{").encode()
    reply = clients["reap"].post("/", content=body, headers=headers)
    assert (reply.status_code, reply.text) == (400, f"not a CloudEvent: {TOO_DEEP}")


# --- structure-aware fuzzing ---------------------------------------------------------------------

leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**301)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.builds(
        operator.mul,
        st.text(alphabet='ab\\"\u2028\ud7ff\U0001f600', min_size=1, max_size=3),
        st.integers(1000, 200_000),
    )
)
# Raw JSON scalars json.dumps cannot write: numbers past Python's int-parsing limit, overflowing
# floats, lone surrogate escapes.
raw_leaves = leaves.map(json.dumps) | st.sampled_from(
    ["1" * 5000, "-" + "9" * 100_000, "1e999999", "-1." + "5" * 10_000, '"\\ud800"',
     '"\\udfff\\ud800x"', "1E-99999999"]
)  # fmt: skip
documents = st.recursive(
    leaves,
    lambda kids: (
        st.lists(kids, max_size=6) | st.dictionaries(st.text(max_size=6), kids, max_size=6)
    ),
    max_leaves=60,
)


@st.composite
def deep_documents(draw: st.DrawFn) -> str:
    """Raw JSON nested anywhere from shallow to far past the bound, arrays and objects mixed."""
    depth = draw(st.sampled_from([0, 1, 50, MAX_DEPTH - 3, MAX_DEPTH, MAX_DEPTH + 1, 3000]))
    opens = draw(st.lists(st.sampled_from(["[", '{"k":']), min_size=depth, max_size=depth))
    closes = ["]" if o == "[" else "}" for o in reversed(opens)]
    return "".join(opens) + draw(raw_leaves) + "".join(closes)


bodies = st.one_of(
    # A review whose fields are replaced by anything at all.
    st.builds(
        review_with,
        st.sampled_from(["object", "oldObject", "uid", "kind", "resource", "operation",
                         "namespace", "dryRun", "subResource"]),
        deep_documents() | documents.map(json.dumps),
    ),
    # Real objects of each kind, with a hostile leaf inside.
    st.builds(
        lambda obj, raw: json.dumps(review(obj, obj, operation="CREATE", kind="Pod"))
        .replace('"fuzz"', raw, 1).encode(),
        st.sampled_from([cocoon_pod(name="fuzz"), workload(1), {"spec": {"agent": "fuzz"}}]),
        deep_documents() | documents.map(json.dumps),
    ),
    # Odd encodings of a valid review: BOMs, UTF-16/32, Latin-1, cut mid-character.
    st.builds(
        lambda encoding, bom: bom + json.dumps(review(workload(1), workload(3)),
                                               ensure_ascii=False).encode(encoding),
        st.sampled_from(["utf-8", "utf-16", "utf-16-le", "utf-32", "latin-1"]),
        st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe"]),
    ),
    st.binary(max_size=200),
)  # fmt: skip


# A lone surrogate escape: Go reads it as U+FFFD; Python's json keeps a surrogate that UTF-8
# cannot write, so every reply, 400 line and log line echoing it must be checked.
LONE = '"\\ud800x\\udc00"'


@pytest.mark.parametrize("target", sorted(ADMISSION))
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(review_with(field, LONE), id=field)
        for field in ("uid", "name", "namespace", "operation", "subResource")
    ]
    + [
        pytest.param(
            json.dumps(review(obj, obj, operation=op, kind=kind, namespace="ns"))
            .replace('"fuzz"', LONE).encode(),
            id=f"{kind}-{op}-{where}",
        )
        for kind, op, obj, where in [
            ("Pod", "CREATE", cocoon_pod(name="fuzz"), "pod-name"),
            ("Deployment", "UPDATE", {**workload(1), "metadata": {"name": "fuzz"}}, "name"),
            ("CocoonSet", "CREATE", {"spec": {"agent": {"image": "i", "mode": "fuzz"}}}, "mode"),
            ("CocoonHibernation", "CREATE",
             {"metadata": {"name": "fuzz"}, "spec": {"podRef": {"name": "x"}}}, "name"),
        ]
    ]
    + [
        pytest.param(
            json.dumps({"apiVersion": "fuzz", "kind": "AdmissionReview"})
            .replace('"fuzz"', LONE).encode(),
            id="apiVersion",
        )
    ],
)  # fmt: skip
def test_lone_surrogates_get_an_answer(
    clients: dict[str, TestClient], body: bytes, target: str
) -> None:
    check_reply(clients[target].post(ADMISSION[target], content=body))


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies, target=st.sampled_from(sorted(ADMISSION)))
def test_fuzzed_reviews_get_an_answer(
    clients: dict[str, TestClient], body: bytes, target: str
) -> None:
    check_reply(clients[target].post(ADMISSION[target], content=body))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=bodies | deep_documents().map(str.encode),
    structured=st.booleans(),
)
def test_fuzzed_events_get_an_answer(
    clients: dict[str, TestClient], body: bytes, structured: bool
) -> None:
    # An event that parses runs a real sweep against the (empty) emulator: 200 or 503.
    headers = (
        {"content-type": "application/cloudevents+json"}
        if structured
        else {**CLOUDEVENT, "content-type": "application/json"}
    )
    reply = clients["reap"].post("/", content=body, headers=headers)
    assert reply.status_code in (200, 400, 503), (reply.status_code, reply.text[:300])
    assert "\n" not in reply.text.strip() and "Traceback" not in reply.text
