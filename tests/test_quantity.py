"""Kubernetes quantity syntax: what resource.ParseQuantity (and the CRD schema) accept."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.quantity import is_quantity


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("100Gi", id="binary-gi"),
        pytest.param("0", id="zero"),
        pytest.param("1", id="plain-integer"),
        pytest.param("500m", id="milli"),
        pytest.param("1.5", id="fraction"),
        pytest.param(".5", id="fraction-without-whole"),
        pytest.param("1.", id="point-without-fraction"),
        pytest.param("1.Gi", id="point-before-suffix"),
        pytest.param("-1", id="negative"),
        pytest.param("+1Ki", id="explicit-plus"),
        pytest.param("1Ki", id="ki"),
        pytest.param("1Mi", id="mi"),
        pytest.param("1Ti", id="ti"),
        pytest.param("1Pi", id="pi"),
        pytest.param("1Ei", id="ei"),
        pytest.param("10n", id="nano"),
        pytest.param("10u", id="micro"),
        pytest.param("10k", id="kilo"),
        pytest.param("10M", id="mega"),
        pytest.param("10G", id="giga"),
        pytest.param("10T", id="tera"),
        pytest.param("10P", id="peta"),
        pytest.param("10E", id="exa"),
        pytest.param("1e3", id="exponent"),
        pytest.param("1E3", id="capital-exponent"),
        pytest.param("1e-3", id="negative-exponent"),
        pytest.param("1e+3", id="plus-exponent"),
        pytest.param("1.5e10", id="fraction-and-exponent"),
        pytest.param("0001Gi", id="leading-zeros"),
        pytest.param("1e9223372036854775807", id="exponent-int64-max"),
        pytest.param("1e-9223372036854775808", id="exponent-int64-min"),
    ],
)
def test_is_quantity_accepts(text: str) -> None:
    assert is_quantity(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("abc", id="word"),
        pytest.param("1.5.5", id="two-points"),
        pytest.param("Gi", id="suffix-only"),
        pytest.param("1 Gi", id="inner-space"),
        pytest.param(" 1Gi", id="leading-space"),
        pytest.param("1Gi ", id="trailing-space"),
        pytest.param("1Gi\n", id="trailing-newline"),
        pytest.param(".", id="point-only"),
        pytest.param("+", id="sign-only"),
        pytest.param("-Gi", id="sign-and-suffix"),
        pytest.param("1gi", id="lower-case-binary"),
        pytest.param("1K", id="capital-kilo"),
        pytest.param("1KiB", id="bytes-unit"),
        pytest.param("1i", id="i-alone"),
        pytest.param("0.1mi", id="milli-binary"),
        pytest.param("1e", id="exponent-without-digits"),
        pytest.param("1e1.5", id="fractional-exponent"),
        pytest.param("1e3Gi", id="exponent-and-suffix"),
        pytest.param("1+1", id="inner-sign"),
        pytest.param("--1", id="double-sign"),
        pytest.param("1e9223372036854775808", id="exponent-past-int64"),
        pytest.param("1e" + "9" * 5000, id="exponent-of-five-thousand-digits"),
        pytest.param("١٢", id="arabic-indic-digits"),
        pytest.param("1,5", id="comma"),
    ],
)
def test_is_quantity_rejects(text: str) -> None:
    assert not is_quantity(text)


# resource.Quantity's suffixes: binary, then decimal (the empty one is a plain number).
BINARY_SUFFIXES = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
DECIMAL_SUFFIXES = ("n", "u", "m", "", "k", "M", "G", "T", "P", "E")
_suffixes = st.sampled_from([*BINARY_SUFFIXES, *DECIMAL_SUFFIXES])
_numbers = st.one_of(
    st.from_regex(r"[0-9]{1,12}", fullmatch=True),
    st.from_regex(r"[0-9]{1,6}\.[0-9]{0,6}", fullmatch=True),
    st.from_regex(r"\.[0-9]{1,6}", fullmatch=True),
)


@given(st.sampled_from(["", "+", "-"]), _numbers, _suffixes)
def test_composed_quantities_parse(sign: str, number: str, suffix: str) -> None:
    assert is_quantity(sign + number + suffix)


@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**40), 10**40))
def test_every_json_number_text_is_a_quantity(number: float) -> None:
    # Go hands a number's JSON text to ParseQuantity, so a JSON number is always a quantity.
    assert is_quantity(json.dumps(number))


# The pattern controller-gen writes into CRD schemas for a resource.Quantity field: an independent
# statement of the grammar. It is looser than ParseQuantity in one way, which the oracle adds: an
# exponent is an integer that fits an int64 (the pattern lets "1e1.5" through).
_CRD_PATTERN = re.compile(
    r"(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](?P<exponent>(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+)))))?"
)


def parse_quantity_accepts(text: str) -> bool:
    match = _CRD_PATTERN.fullmatch(text)
    if match is None:
        return False
    exponent = match.group("exponent")
    if exponent is None:
        return True
    if not re.fullmatch(r"[+-]?[0-9]{1,25}", exponent):
        return False
    return -(2**63) <= int(exponent) <= 2**63 - 1


@given(
    st.text(max_size=20)
    # near misses: wrong case, stray units, fractional or oversized exponents, spaces
    | st.from_regex(
        r"[+-]{0,2}[0-9.]{0,4}([KMGTPEkmgtpe][iIB]?|[eE][+-]?[0-9.]{0,22}|[numkMGTPEiB ]{0,2})",
        fullmatch=True,
    )
    | st.from_regex(_CRD_PATTERN, fullmatch=True)
)
def test_is_quantity_agrees_with_the_crd_pattern(text: str) -> None:
    assert is_quantity(text) is parse_quantity_accepts(text)


_UNIT_LETTERS = "KMGTPEkmgtpenuiIB"
_NEAR_SUFFIXES = [
    "",
    *_UNIT_LETTERS,
    *(a + b for a in _UNIT_LETTERS for b in _UNIT_LETTERS),
    *("e3", "E-3", "e+3", "e", "e+", "e1.5", "e.5", "e3Gi"),
    *("e9223372036854775807", "e9223372036854775808"),
    *("e-9223372036854775808", "e-9223372036854775809"),
]


def test_is_quantity_agrees_with_the_crd_pattern_on_every_near_miss() -> None:
    """Every sign, number shape and one- or two-letter unit: the table a property test samples."""
    disagreements = [
        text
        for sign in ("", "+", "-", "--")
        for number in ("1", "1.", ".5", "01.50", "", ".")
        for suffix in _NEAR_SUFFIXES
        if is_quantity(text := sign + number + suffix) is not parse_quantity_accepts(text)
    ]
    assert disagreements == []
