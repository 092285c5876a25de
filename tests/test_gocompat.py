"""common.gocompat: text the way Go and Kubernetes handle it."""

from __future__ import annotations

import ast
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.gocompat import TRACE, cut, go_len, go_quote, go_text, go_utf8, is_dns1123_subdomain
from common.logs import JsonFormatter


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        pytest.param("", '""', id="empty"),
        pytest.param("plain", '"plain"', id="plain"),
        pytest.param('say "hi"\\', '"say \\"hi\\"\\\\"', id="quote-and-backslash"),
        pytest.param("it's", '"it\'s"', id="single-quote-kept"),
        pytest.param("\a\b\f\n\r\t\v", '"\\a\\b\\f\\n\\r\\t\\v"', id="named-escapes"),
        pytest.param("\x00\x1b\x7f", '"\\x00\\x1b\\x7f"', id="ascii-controls"),
        pytest.param("\x85", '"\\u0085"', id="c1-control"),
        pytest.param("\xa0", '"\\u00a0"', id="no-break-space"),
        pytest.param("\u200b", '"\\u200b"', id="format-character"),
        pytest.param("\u2028", '"\\u2028"', id="line-separator"),
        pytest.param("\ue000", '"\\ue000"', id="private-use"),
        pytest.param("\U000e0001", '"\\U000e0001"', id="astral-non-printable"),
        pytest.param("\U0010ffff", '"\\U0010ffff"', id="astral-unassigned"),
        pytest.param("é ü 名 😀", '"é ü 名 😀"', id="printable-unicode-kept"),
        pytest.param("\ud800", '"\ufffd"', id="lone-surrogate-as-go-holds-it"),
        pytest.param("\ufffd", '"\ufffd"', id="replacement-char"),
    ],
)
def test_go_quote_matches_strconv_quote(value: str, quoted: str) -> None:
    assert go_quote(value) == quoted


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"])))
def test_go_quote_round_trips_as_a_python_literal(value: str) -> None:
    # Go's escapes are a subset of Python's, so a quoted value reads back as itself, on one line.
    quoted = go_quote(value)
    assert "\n" not in quoted
    assert ast.literal_eval(quoted) == value


@pytest.mark.parametrize(
    ("text", "length"),
    [("abc", 3), ("é", 2), ("名", 3), ("🙂", 4), ("\ud800", 3), ("", 0)],
)
def test_go_len_counts_utf8_bytes(text: str, length: int) -> None:
    assert go_len(text) == length


def test_cut_keeps_short_text_and_ends_long_text_with_an_ellipsis() -> None:
    assert cut("abc", 3) == "abc"
    assert cut("abcd", 3) == "ab…"
    assert len(cut("x" * 500, 40)) == 40


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("cocoon-affinity-default", True),
        ("a.b-c.d", True),
        ("a", True),
        ("0", True),
        ("a" * 253, True),
        ("a" * 254, False),
        ("", False),
        ("A", False),
        ("-a", False),
        ("a-", False),
        ("a..b", False),
        ("a.-b", False),
        ("a.", False),
        ("Example.com", False),
        ("a_b", False),
        ("é", False),
    ],
)
def test_is_dns1123_subdomain(value: str, valid: bool) -> None:
    assert is_dns1123_subdomain(value) is valid


def test_trace_is_below_debug() -> None:
    assert TRACE < logging.DEBUG


def test_lone_surrogates_are_written_as_go_holds_them() -> None:
    assert go_text("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert go_utf8("a\udc00\U0001f600") == "a\ufffd\U0001f600".encode()
    assert go_utf8("plain") == b"plain"


def test_a_log_line_with_a_lone_surrogate_can_be_written() -> None:
    record = logging.makeLogRecord({"msg": "denied", "error": "name \ud800"})
    line = JsonFormatter().format(record)
    assert line.encode()  # stdout is UTF-8: a surrogate would fail the write
    assert json.loads(line)["error"] == "name \ufffd"
