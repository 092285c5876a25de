"""decisions.reap: the stale-selection rule as tables (SPEC 8.2 step 3)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from common.decisions.reap import (
    Changes,
    Outcome,
    Presence,
    format_malformed_since,
    judge,
    needed_namespaces,
    parse_malformed_since,
)
from common.naming import MALFORMED_SINCE_ANNOTATION
from common.pod import pods_from_json
from common.reservation import Reservation, decode, encode, format_time, read_entries

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
GRACE = timedelta(minutes=30)
WINDOW = timedelta(seconds=30)
KEY = "ns.demo.0"


def entry(
    *, claimed: timedelta = timedelta(hours=1), missing: timedelta | None = None, **fields: str
) -> Reservation:
    """An entry claimed `claimed` before NOW, marked missing `missing` before NOW if given."""
    values = {"namespace": "ns", "pod": "demo-abcde", "vm_name": "vk-ns-demo-0", **fields}
    return Reservation(
        pool="default",
        namespace=values["namespace"],
        deployment="demo",
        slot=0,
        vm_name=values["vm_name"],
        pod=values["pod"],
        node="cocoon-a",
        updated_at=NOW - claimed,
        missing_since=None if missing is None else NOW - missing,
    )


def judge_data(
    data: dict[str, str],
    annotation: str | None,
    pods: Mapping[str, Presence | None],
    now: datetime,
    grace: timedelta,
    window: timedelta,
) -> Changes:
    return judge(read_entries(data), annotation, pods, now, grace, window)


PRESENT = Presence(names=frozenset({"demo-abcde"}))
ABSENT = Presence(names=frozenset({"other"}), vm_names=frozenset({"vk-ns-other-0"}))
BY_VM_NAME = Presence(names=frozenset({"renamed"}), vm_names=frozenset({"vk-ns-demo-0"}))


def judge_one(
    value: Reservation,
    presence: Presence | None,
    *,
    now: datetime = NOW,
    grace: timedelta = GRACE,
    window: timedelta = WINDOW,
) -> Changes:
    pods = {} if presence is None else {"ns": presence}
    return judge_data({KEY: encode(value)}, None, pods, now, grace, window)


@pytest.mark.parametrize(
    ("value", "presence", "outcome"),
    [
        pytest.param(entry(), PRESENT, Outcome.PRESENT, id="present-unmarked"),
        pytest.param(entry(missing=timedelta(minutes=5)), PRESENT, Outcome.CLEARED,
                     id="present-again-clears-mark"),
        pytest.param(entry(missing=timedelta(hours=5)), PRESENT, Outcome.CLEARED,
                     id="present-after-grace-still-clears"),
        pytest.param(entry(), BY_VM_NAME, Outcome.PRESENT, id="present-by-vm-name-annotation"),
        pytest.param(entry(vm_name=""), Presence(vm_names=frozenset({""})), Outcome.MARKED,
                     id="empty-vm-name-matches-nothing"),
        pytest.param(entry(), ABSENT, Outcome.MARKED, id="missing-first-time-marks"),
        pytest.param(entry(claimed=timedelta(days=400)), ABSENT, Outcome.MARKED,
                     id="old-claim-still-gets-the-grace"),
        pytest.param(entry(missing=timedelta(minutes=29, seconds=59)), ABSENT, Outcome.WAITING,
                     id="marked-inside-grace-waits"),
        pytest.param(entry(missing=GRACE), ABSENT, Outcome.RELEASED, id="grace-exactly-releases"),
        pytest.param(entry(missing=timedelta(hours=2)), ABSENT, Outcome.RELEASED,
                     id="marked-past-grace-releases"),
        pytest.param(entry(missing=-timedelta(minutes=5)), ABSENT, Outcome.WAITING,
                     id="mark-in-the-future-waits"),
        pytest.param(entry(claimed=timedelta(seconds=29)), ABSENT, Outcome.IN_FLIGHT,
                     id="in-flight-not-marked"),
        pytest.param(entry(claimed=timedelta(seconds=29), missing=timedelta(hours=2)), ABSENT,
                     Outcome.IN_FLIGHT, id="in-flight-not-released-even-if-marked"),
        pytest.param(entry(claimed=timedelta(seconds=29), missing=timedelta(hours=2)), PRESENT,
                     Outcome.IN_FLIGHT, id="in-flight-not-cleared"),
        pytest.param(entry(claimed=-timedelta(seconds=5)), ABSENT, Outcome.IN_FLIGHT,
                     id="claim-after-now-is-in-flight"),
        pytest.param(entry(claimed=WINDOW), ABSENT, Outcome.MARKED, id="window-edge-is-judged"),
        pytest.param(entry(missing=timedelta(hours=2)), None, Outcome.UNKNOWN,
                     id="namespace-list-failed-untouched"),
        pytest.param(entry(claimed=timedelta(seconds=1)), None, Outcome.IN_FLIGHT,
                     id="in-flight-needs-no-snapshot"),
    ],
)  # fmt: skip
def test_stale_selection(value: Reservation, presence: Presence | None, outcome: Outcome) -> None:
    changes = judge_one(value, presence)
    assert changes.outcomes == {KEY: outcome}
    assert changes.removals == (
        {KEY} if outcome in (Outcome.RELEASED, Outcome.MALFORMED_RELEASED) else set()
    )
    if outcome is Outcome.MARKED:
        assert decode(changes.updates[KEY]) == entry_with(value, missing_since=NOW)
    elif outcome is Outcome.CLEARED:
        assert decode(changes.updates[KEY]) == entry_with(value, missing_since=None)
    else:
        assert changes.updates == {}
    assert changes.changed == (outcome in (Outcome.MARKED, Outcome.CLEARED, Outcome.RELEASED))


def entry_with(value: Reservation, missing_since: datetime | None) -> Reservation:
    return Reservation(
        pool=value.pool, namespace=value.namespace, deployment=value.deployment, slot=value.slot,
        vm_name=value.vm_name, pod=value.pod, node=value.node, updated_at=value.updated_at,
        missing_since=missing_since,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("grace", "window", "missing", "claimed", "outcome"),
    [
        pytest.param(timedelta(seconds=2), timedelta(seconds=1), timedelta(seconds=2),
                     timedelta(seconds=3), Outcome.RELEASED, id="short-grace-releases"),
        pytest.param(timedelta(seconds=2), timedelta(seconds=1), timedelta(seconds=1),
                     timedelta(seconds=3), Outcome.WAITING, id="short-grace-waits"),
        pytest.param(timedelta(hours=1), timedelta(minutes=5), timedelta(hours=2),
                     timedelta(minutes=4), Outcome.IN_FLIGHT, id="wide-window-protects"),
    ],
)  # fmt: skip
def test_grace_and_window_are_parameters(
    grace: timedelta, window: timedelta, missing: timedelta, claimed: timedelta, outcome: Outcome
) -> None:
    changes = judge_one(entry(claimed=claimed, missing=missing), ABSENT, grace=grace, window=window)
    assert changes.outcomes == {KEY: outcome}


def test_marking_rewrites_only_missing_since_and_keeps_go_time_digits() -> None:
    # A Go-written value with nanoseconds: marking must not round the claim.
    value = (
        '{"pool":"default","namespace":"ns","deployment":"demo","slot":0,"vmName":"vk-ns-demo-0",'
        '"pod":"demo-abcde","node":"cocoon-a","updatedAt":"2026-11-25T10:00:00.123456789Z"}'
    )
    changes = judge_data({KEY: value}, None, {"ns": ABSENT}, NOW, GRACE, WINDOW)
    assert changes.updates[KEY] == value[:-1] + ',"missingSince":"2026-11-25T12:00:00Z"}'
    cleared = judge_data(changes.updates, None, {"ns": PRESENT}, NOW, GRACE, WINDOW)
    assert cleared.updates[KEY] == value


def test_presence_from_listed_pods_counts_every_phase() -> None:
    listed = pods_from_json([
        {"metadata": {"name": "done", "namespace": "ns"}, "status": {"phase": "Succeeded"}},
        {"metadata": {"name": "x", "namespace": "ns",
                      "annotations": {"vm.cocoonstack.io/name": "vk-ns-legacy-0"}},
         "status": {"phase": "Failed"}},
        {"metadata": {"name": "plain", "namespace": "ns"}},
    ])  # fmt: skip
    presence = Presence.of(listed)
    assert presence.names == {"done", "x", "plain"}
    assert presence.vm_names == {"vk-ns-legacy-0"}
    assert presence.holds(entry(pod="done"))
    assert presence.holds(entry(pod="<unnamed>", vm_name="vk-ns-legacy-0"))
    assert not presence.holds(entry(pod="gone"))


def test_entries_are_judged_by_their_own_namespace() -> None:
    data = {
        "a.demo.0": encode(entry(namespace="a", pod="p")),
        "b.demo.0": encode(entry(namespace="b", pod="p")),
        "c.demo.0": encode(entry(namespace="c", pod="p")),
    }
    pods = {"a": Presence(names=frozenset({"p"})), "b": Presence(), "c": None}
    changes = judge_data(data, None, pods, NOW, GRACE, WINDOW)
    assert changes.outcomes == {
        "a.demo.0": Outcome.PRESENT,
        "b.demo.0": Outcome.MARKED,
        "c.demo.0": Outcome.UNKNOWN,
    }


# --- malformed values ----------------------------------------------------------------------------

BAD = "not json"


def marks(**since: timedelta) -> str:
    return json.dumps({key.replace("_", "."): format_time(NOW - ago) for key, ago in since.items()})


@pytest.mark.parametrize(
    ("annotation", "outcome", "recorded"),
    [
        pytest.param(None, Outcome.MALFORMED, NOW, id="first-seen-records-now"),
        pytest.param(marks(x_y=timedelta(minutes=5)), Outcome.MALFORMED,
                     NOW - timedelta(minutes=5), id="inside-grace-keeps-first-time"),
        pytest.param(marks(x_y=GRACE), Outcome.MALFORMED_RELEASED, None,
                     id="after-grace-removed"),
        pytest.param('{"x.y": "yesterday"}', Outcome.MALFORMED, NOW, id="bad-time-restarts"),
        pytest.param("[1, 2]", Outcome.MALFORMED, NOW, id="bad-annotation-restarts"),
        pytest.param('{"x.y": 7}', Outcome.MALFORMED, NOW, id="non-string-time-restarts"),
    ],
)  # fmt: skip
def test_malformed_value(
    annotation: str | None, outcome: Outcome, recorded: datetime | None
) -> None:
    changes = judge_data({"x.y": BAD}, annotation, {}, NOW, GRACE, WINDOW)
    assert changes.outcomes == {"x.y": outcome}
    assert changes.reasons == {"x.y": "not a JSON object"}
    expected = {} if recorded is None else {"x.y": recorded}
    assert parse_malformed_since(changes.annotation) == expected
    assert changes.removals == ({"x.y"} if recorded is None else set())


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("[]", "not a JSON object", id="array"),
        pytest.param('{"namespace":"ns","pod":""}', "pod is empty or not a string", id="empty-pod"),
        pytest.param('{"namespace":"ns","pod":"p","slot":-1}',
                     "slot is not a non-negative integer", id="negative-slot"),
        pytest.param('{"namespace":"ns","pod":"p","updatedAt":"soon"}',
                     'updatedAt: unparseable time "soon"', id="bad-time"),
        pytest.param('{"namespace":"ns","pod":"p","node":3}', "node is not a string",
                     id="wrong-type"),
    ],
)  # fmt: skip
def test_malformed_rule_is_the_codec_rule(value: str, reason: str) -> None:
    changes = judge_data({"k": value}, None, {"ns": ABSENT}, NOW, GRACE, WINDOW)
    assert changes.outcomes == {"k": Outcome.MALFORMED}
    assert changes.reasons == {"k": reason}


def test_healed_and_vanished_keys_leave_the_annotation() -> None:
    annotation = marks(healed_0=timedelta(minutes=1), gone_0=timedelta(minutes=1),
                       bad_0=timedelta(minutes=2))  # fmt: skip
    data = {"healed.0": encode(entry()), "bad.0": BAD}
    changes = judge_data(data, annotation, {"ns": PRESENT}, NOW, GRACE, WINDOW)
    assert parse_malformed_since(changes.annotation) == {"bad.0": NOW - timedelta(minutes=2)}
    assert changes.annotation_changed
    new_data, annotations = changes.apply(data, {"keep": "me", MALFORMED_SINCE_ANNOTATION: "x"})
    assert new_data == data
    assert annotations == {"keep": "me", MALFORMED_SINCE_ANNOTATION: changes.annotation}


def test_annotation_dropped_when_nothing_is_malformed() -> None:
    annotation = marks(bad_0=GRACE)
    data = {"bad.0": BAD, "ok.0": encode(entry())}
    changes = judge_data(data, annotation, {"ns": PRESENT}, NOW, GRACE, WINDOW)
    assert changes.annotation is None
    new_data, annotations = changes.apply(data, {MALFORMED_SINCE_ANNOTATION: annotation})
    assert new_data == {"ok.0": data["ok.0"]}
    assert annotations == {}


def test_unchanged_marks_write_nothing() -> None:
    first = judge_data({"bad.0": BAD}, None, {}, NOW, GRACE, WINDOW)
    assert first.changed
    later = judge_data(
        {"bad.0": BAD}, first.annotation, {}, NOW + timedelta(minutes=1), GRACE, WINDOW
    )
    assert later.annotation == first.annotation
    assert not later.changed


def test_annotation_text_is_compact_and_sorted() -> None:
    text = format_malformed_since({"b": NOW, "a": NOW - timedelta(microseconds=500)})
    assert text == '{"a":"2026-11-25T11:59:59.9995Z","b":"2026-11-25T12:00:00Z"}'
    assert format_malformed_since({}) is None


# --- what the sweep lists and counts -------------------------------------------------------------


def test_needed_namespaces_skip_in_flight_and_malformed() -> None:
    data = {
        "a": encode(entry(namespace="old")),
        "b": encode(entry(namespace="young", claimed=timedelta(seconds=1))),
        "c": BAD,
        "d": encode(entry(namespace="old2", missing=timedelta(hours=1))),
    }
    assert needed_namespaces(read_entries(data), NOW, WINDOW) == {"old", "old2"}


def test_apply_and_counts_over_a_mixed_configmap() -> None:
    data = {
        "k.present": encode(entry(pod="alive")),
        "k.back": encode(entry(pod="alive", missing=timedelta(minutes=1))),
        "k.new-missing": encode(entry(pod="gone-1")),
        "k.waiting": encode(entry(pod="gone-2", missing=timedelta(minutes=1))),
        "k.stale": encode(entry(pod="gone-3", missing=timedelta(hours=1))),
        "k.young": encode(entry(pod="gone-4", claimed=timedelta(seconds=2))),
        "k.bad": BAD,
    }
    pods = {"ns": Presence(names=frozenset({"alive"}))}
    changes = judge_data(data, None, pods, NOW, GRACE, WINDOW)
    assert changes.count(Outcome.MARKED) == 1
    assert changes.count(Outcome.CLEARED) == 1
    assert changes.count(Outcome.RELEASED, Outcome.MALFORMED_RELEASED) == 1
    assert changes.count(Outcome.MALFORMED, Outcome.MALFORMED_RELEASED) == 1
    new_data, annotations = changes.apply(data, {})
    assert set(new_data) == set(data) - {"k.stale"}
    assert decode(new_data["k.new-missing"]).missing_since == NOW
    assert decode(new_data["k.back"]).missing_since is None
    assert new_data["k.waiting"] == data["k.waiting"]
    assert new_data["k.young"] == data["k.young"]
    assert annotations == {MALFORMED_SINCE_ANNOTATION: '{"k.bad":"2026-11-25T12:00:00Z"}'}
