"""Reservation value codec (SPEC 5.8) and the malformed rule (8.2)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from common.reservation import (
    CONFIGMAP_DATA_LIMIT,
    YEAR_ONE,
    MalformedEntry,
    Reservation,
    data_bytes,
    decode,
    decode_entries,
    encode,
    format_time,
    parse_time,
)

T0 = datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC)

DEMO_0 = Reservation(
    pool="default",
    namespace="ns",
    deployment="demo",
    slot=0,
    vm_name="vk-ns-demo-0",
    pod="demo-7b7c9d9d5f-xxxxx",
    node="cocoon-b",
    updated_at=T0,
)


@pytest.mark.parametrize(
    ("reservation", "text"),
    [
        pytest.param(
            DEMO_0,
            '{"pool":"default","namespace":"ns","deployment":"demo","slot":0,'
            '"vmName":"vk-ns-demo-0","pod":"demo-7b7c9d9d5f-xxxxx","node":"cocoon-b",'
            '"updatedAt":"2024-05-01T10:20:30Z"}',
            id="deployment-entry-whole-second",
        ),
        pytest.param(
            Reservation("gpu", "ns", "", 0, "vk-ns-web-0", "web-0", "", T0.replace(microsecond=5)),
            '{"pool":"gpu","namespace":"ns","deployment":"","slot":0,"vmName":"vk-ns-web-0",'
            '"pod":"web-0","node":"","updatedAt":"2024-05-01T10:20:30.000005Z"}',
            id="bare-entry-empty-node-microseconds",
        ),
        pytest.param(
            dataclasses.replace(
                DEMO_0,
                updated_at=T0.replace(microsecond=120000),
                missing_since=T0 + timedelta(minutes=1),
            ),
            '{"pool":"default","namespace":"ns","deployment":"demo","slot":0,'
            '"vmName":"vk-ns-demo-0","pod":"demo-7b7c9d9d5f-xxxxx","node":"cocoon-b",'
            '"updatedAt":"2024-05-01T10:20:30.12Z","missingSince":"2024-05-01T10:21:30Z"}',
            id="missing-since-last-and-trimmed-fraction",
        ),
        pytest.param(
            dataclasses.replace(DEMO_0, pod="a<b>&c", updated_at=YEAR_ONE),
            '{"pool":"default","namespace":"ns","deployment":"demo","slot":0,'
            '"vmName":"vk-ns-demo-0","pod":"a\\u003cb\\u003e\\u0026c","node":"cocoon-b",'
            '"updatedAt":"0001-01-01T00:00:00Z"}',
            id="go-html-escapes-and-zero-time",
        ),
    ],
)
def test_encode_is_exact_and_round_trips(reservation: Reservation, text: str) -> None:
    assert encode(reservation) == text
    assert decode(text) == reservation


GO_WRITTEN = (
    '{"pool":"default","namespace":"ns","deployment":"demo","slot":3,"vmName":"vk-ns-demo-3",'
    '"pod":"demo-7b7c9d9d5f-\\u003cunnamed\\u003e","node":"cocoon-a",'
    '"updatedAt":"2024-05-01T10:20:30.123456789Z"}'
)


def test_go_written_value_round_trips_byte_exact() -> None:
    reservation = decode(GO_WRITTEN)
    assert reservation.pod == "demo-7b7c9d9d5f-<unnamed>"
    assert reservation.updated_at == datetime(2024, 5, 1, 10, 20, 30, 123456, tzinfo=UTC)
    assert encode(reservation) == GO_WRITTEN
    # A rewrite of another field keeps the nanoseconds...
    marked = dataclasses.replace(reservation, missing_since=T0)
    assert encode(marked).startswith(GO_WRITTEN[:-1] + ',"missingSince":"2024-05-01T10:20:30Z"')
    # ...and a new claim is written from the datetime.
    renewed = dataclasses.replace(reservation, updated_at=T0)
    assert '"updatedAt":"2024-05-01T10:20:30Z"' in encode(renewed)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        pytest.param("2024-05-01T10:20:30Z", T0, id="no-fraction"),
        pytest.param("2024-05-01T10:20:30.5Z", T0.replace(microsecond=500000), id="one-digit"),
        pytest.param("2024-05-01T10:20:30.000001Z", T0.replace(microsecond=1), id="six-digits"),
        pytest.param("2024-05-01T10:20:30.999999999Z", T0.replace(microsecond=999999), id="nine"),
        pytest.param("2024-05-01T12:20:30+02:00", T0, id="offset"),
        pytest.param("2024-05-01T08:20:30-02:00", T0, id="negative-offset"),
        pytest.param("0001-01-01T00:00:00Z", YEAR_ONE, id="go-zero-time"),
    ],
)
def test_parse_time(text: str, moment: datetime) -> None:
    assert parse_time(text) == moment


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2024-05-01T10:20:30.1234567891Z", id="ten-digits"),
        pytest.param("2024-05-01T10:20:30.Z", id="empty-fraction"),
        pytest.param("2024-05-01 10:20:30Z", id="space"),
        pytest.param("2024-05-01T10:20:30", id="no-zone"),
        pytest.param("2024-13-01T10:20:30Z", id="month-13"),
        pytest.param("2024-05-01T24:00:00Z", id="hour-24"),
        pytest.param("2024-05-01T10:20:60Z", id="leap-second"),
        pytest.param("2024-05-01T10:20:30+25:00", id="bad-offset"),
        pytest.param("", id="empty"),
        pytest.param("yesterday", id="words"),
    ],
)
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(MalformedEntry):
        parse_time(text)


def test_format_time() -> None:
    assert format_time(T0.replace(microsecond=100)) == "2024-05-01T10:20:30.0001Z"
    assert format_time(T0.astimezone(timezone(timedelta(hours=2)))) == "2024-05-01T10:20:30Z"
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2024, 1, 1))


@pytest.mark.parametrize(
    ("text", "check"),
    [
        pytest.param(
            '{"namespace":"ns","pod":"p"}',
            lambda r: (r.updated_at, r.slot, r.node, r.deployment) == (YEAR_ONE, 0, "", ""),
            id="minimal-missing-updated-at-is-year-one",
        ),
        pytest.param(
            '{"namespace":"ns","pod":"p","extra":{"x":1},"pool":null}',
            lambda r: r.pool == "",
            id="unknown-fields-and-null-ignored",
        ),
        pytest.param(
            '{"namespace":"ns","pod":"p","slot":-0}', lambda r: r.slot == 0, id="minus-zero"
        ),
    ],
)
def test_decode_lenient(text: str, check: object) -> None:
    assert callable(check)
    assert check(decode(text))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("", "not a JSON object", id="empty"),
        pytest.param("not json", "not a JSON object", id="not-json"),
        pytest.param("[1]", "not a JSON object", id="array"),
        pytest.param('"x"', "not a JSON object", id="string"),
        pytest.param('{"namespace":"ns","pod":"p"} x', "not a JSON object", id="trailing"),
        pytest.param('{"pod":"p"}', "namespace is empty or not a string", id="no-namespace"),
        pytest.param('{"namespace":"","pod":"p"}', "namespace is empty or not a string", id="e"),
        pytest.param('{"namespace":"ns","pod":3}', "pod is empty or not a string", id="pod-num"),
        pytest.param('{"namespace":"ns","pod":""}', "pod is empty or not a string", id="pod-e"),
        pytest.param(
            '{"namespace":"ns","pod":"p","slot":-1}',
            "slot is not a non-negative integer",
            id="negative-slot",
        ),
        pytest.param(
            '{"namespace":"ns","pod":"p","slot":1.0}',
            "slot is not a non-negative integer",
            id="float-slot",
        ),
        pytest.param(
            '{"namespace":"ns","pod":"p","slot":"1"}',
            "slot is not a non-negative integer",
            id="string-slot",
        ),
        pytest.param(
            '{"namespace":"ns","pod":"p","slot":true}',
            "slot is not a non-negative integer",
            id="bool-slot",
        ),
        pytest.param('{"namespace":"ns","pod":"p","slot":NaN}', "not a JSON object", id="nan-slot"),
        pytest.param('{"namespace":"ns","pod":"p","node":1}', "node is not a string", id="node"),
        pytest.param(
            '{"namespace":"ns","pod":"p","vmName":[]}', "vmName is not a string", id="vm-name"
        ),
        pytest.param(
            '{"namespace":"ns","pod":"p","updatedAt":"soon"}',
            'updatedAt: unparseable time "soon"',
            id="bad-updated-at",
        ),
        pytest.param(
            '{"namespace":"ns","pod":"p","missingSince":""}',
            'missingSince: unparseable time ""',
            id="empty-missing-since",
        ),
    ],
)
def test_decode_malformed(text: str, reason: str) -> None:
    with pytest.raises(MalformedEntry) as err:
        decode(text)
    assert err.value.reason == reason


def test_decode_entries_splits_good_and_bad() -> None:
    good, bad = decode_entries({"ns.demo.0": encode(DEMO_0), "junk": "x"})
    assert good == {"ns.demo.0": DEMO_0}
    assert list(bad) == ["junk"]


@pytest.mark.parametrize(
    ("reservation", "key"),
    [
        pytest.param(DEMO_0, "ns.demo.0", id="deployment"),
        pytest.param(
            dataclasses.replace(DEMO_0, deployment="", pod="web-0"), "ns._pod.web-0", id="bare"
        ),
    ],
)
def test_canonical_key(reservation: Reservation, key: str) -> None:
    assert reservation.canonical_key() == key


@pytest.mark.parametrize(
    ("claimed", "in_flight"),
    [
        pytest.param(T0, True, id="now"),
        pytest.param(T0 - timedelta(seconds=29.999), True, id="just-inside"),
        pytest.param(T0 - timedelta(seconds=30), False, id="window-boundary"),
        pytest.param(T0 + timedelta(seconds=5), True, id="future-clock-skew"),
        pytest.param(YEAR_ONE, False, id="year-one"),
    ],
)
def test_in_flight(claimed: datetime, in_flight: bool) -> None:
    reservation = dataclasses.replace(DEMO_0, updated_at=claimed)
    assert reservation.in_flight(T0, timedelta(seconds=30)) is in_flight


def test_data_bytes_counts_keys_and_utf8_values() -> None:
    assert CONFIGMAP_DATA_LIMIT == 1024 * 1024
    assert data_bytes({}) == 0
    assert data_bytes({"ab": "cd", "e": "é"}) == 2 + 2 + 1 + 2
