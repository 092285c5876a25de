"""Settings.from_env and its parsers: SPEC 10's table, one row per rule, exact messages."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import config, runtime
from common.config import (
    DISABLED,
    HOUR,
    MICROSECOND,
    MILLISECOND,
    MINUTE,
    SECOND,
    TRACE,
    ConfigError,
    DurationError,
    Settings,
    format_go_duration,
    parse_address,
    parse_go_duration,
    parse_log_level,
)

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

# --- parse_go_duration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        pytest.param("0", 0, id="bare-zero"),
        pytest.param("+0", 0, id="plus-zero"),
        pytest.param("-0", 0, id="minus-zero"),
        pytest.param("0s", 0, id="zero-seconds"),
        pytest.param("90s", 90 * SECOND, id="seconds"),
        pytest.param("5m", 5 * MINUTE, id="minutes"),
        pytest.param("1h30m", HOUR + 30 * MINUTE, id="two-groups"),
        pytest.param(
            "1h1m1s1ms1us1ns",
            HOUR + MINUTE + SECOND + MILLISECOND + MICROSECOND + 1,
            id="every-unit",
        ),
        pytest.param("1.5h", HOUR + 30 * MINUTE, id="fraction"),
        pytest.param(".5s", 500 * MILLISECOND, id="fraction-without-whole"),
        pytest.param("1.s", SECOND, id="point-without-fraction"),
        pytest.param("-1.5s", -1500 * MILLISECOND, id="negative"),
        pytest.param("+3s", 3 * SECOND, id="explicit-plus"),
        pytest.param("1µs", MICROSECOND, id="micro-sign-u00b5"),
        pytest.param("1μs", MICROSECOND, id="greek-mu-u03bc"),
        pytest.param("1us", MICROSECOND, id="ascii-us"),
        pytest.param("1.0000000001s", SECOND, id="sub-ns-fraction-truncated"),
        pytest.param("0.3333333333h", 1_199_999_999_880, id="fraction-of-hour-exact"),
        pytest.param("100ms", 100 * MILLISECOND, id="milliseconds"),
        pytest.param("2h45m", 2 * HOUR + 45 * MINUTE, id="hours-minutes"),
        pytest.param("1s1s", 2 * SECOND, id="repeated-unit-adds"),
        pytest.param("2562047h47m16.854775807s", INT64_MAX, id="int64-max"),
        pytest.param("-2562047h47m16.854775808s", INT64_MIN, id="int64-min"),
        pytest.param("9223372036854775807ns", INT64_MAX, id="int64-max-ns"),
        pytest.param("00000000000000000000000001s", SECOND, id="many-leading-zeros"),
    ],
)
def test_parse_go_duration_accepts(text: str, ns: int) -> None:
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("", "empty duration", id="empty"),
        pytest.param("+", "not a duration", id="sign-only"),
        pytest.param("-", "not a duration", id="minus-only"),
        pytest.param("300", "missing unit", id="unitless"),
        pytest.param("00", "missing unit", id="double-zero-is-not-bare-zero"),
        pytest.param("1h30", "missing unit", id="trailing-unitless"),
        pytest.param("1.5", "missing unit", id="unitless-fraction"),
        pytest.param("s", "not a duration", id="unit-only"),
        pytest.param(".s", "not a duration", id="point-only"),
        pytest.param("-.s", "not a duration", id="signed-point-only"),
        pytest.param("1..5s", "missing unit", id="double-point"),
        pytest.param("1d", 'unknown unit "d"', id="days"),
        pytest.param("1 h", 'unknown unit " h"', id="space-before-unit"),
        pytest.param(" 1h", "not a duration", id="leading-space"),
        pytest.param("1H", 'unknown unit "H"', id="units-are-case-sensitive"),
        pytest.param("1e3s", 'unknown unit "e"', id="no-exponent"),
        pytest.param("1ms-2s", 'unknown unit "ms-"', id="sign-inside"),
        pytest.param("5m\n", 'unknown unit "m\\n"', id="trailing-newline"),
        pytest.param(
            "2562047h47m16.854775808s",
            "out of range (at most about 292 years)",
            id="int64-max-plus-one",
        ),
        pytest.param(
            "-2562047h47m16.854775809s",
            "out of range (at most about 292 years)",
            id="int64-min-minus-one",
        ),
        pytest.param(
            "9223372036854775808ns", "out of range (at most about 292 years)", id="ns-overflow"
        ),
        pytest.param("3000000h", "out of range (at most about 292 years)", id="hours-overflow"),
        pytest.param(
            "1" * 5000 + "s", "out of range (at most about 292 years)", id="five-thousand-digits"
        ),
    ],
)
def test_parse_go_duration_rejects(text: str, reason: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_go_duration(text)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        pytest.param(0, "0s", id="zero"),
        pytest.param(1, "1ns", id="ns"),
        pytest.param(1500, "1.5µs", id="us-fraction"),
        pytest.param(300 * MILLISECOND, "300ms", id="ms"),
        pytest.param(1500 * MILLISECOND, "1.5s", id="s-fraction"),
        pytest.param(90 * SECOND, "1m30s", id="minute-seconds"),
        pytest.param(30 * MINUTE, "30m0s", id="minutes-keep-zero-seconds"),
        pytest.param(HOUR, "1h0m0s", id="hour"),
        pytest.param(-5 * SECOND, "-5s", id="negative"),
        pytest.param(INT64_MAX, "2562047h47m16.854775807s", id="int64-max"),
        pytest.param(INT64_MIN, "-2562047h47m16.854775808s", id="int64-min"),
    ],
)
def test_format_go_duration_matches_go(ns: int, text: str) -> None:
    assert format_go_duration(ns) == text


@given(st.integers(min_value=INT64_MIN, max_value=INT64_MAX))
def test_duration_round_trips(ns: int) -> None:
    assert parse_go_duration(format_go_duration(ns)) == ns


_UNIT_NS = {
    "ns": 1,
    "us": MICROSECOND,
    "µs": MICROSECOND,
    "μs": MICROSECOND,
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}


@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from(sorted(_UNIT_NS))), min_size=1, max_size=6
    )
)
def test_groups_add_up(groups: list[tuple[int, str]]) -> None:
    text = "".join(f"{count}{unit}" for count, unit in groups)
    total = sum(count * _UNIT_NS[unit] for count, unit in groups)
    if total > INT64_MAX:  # about 292 years: Go refuses the sum, not only a single group
        with pytest.raises(DurationError):
            parse_go_duration(text)
    else:
        assert parse_go_duration(text) == total


@given(st.text(max_size=30))
def test_parse_only_raises_duration_error(text: str) -> None:
    try:
        ns = parse_go_duration(text)
    except DurationError as error:
        assert error.reason
    else:
        assert INT64_MIN <= ns <= INT64_MAX


# --- log levels ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "level"),
    [
        pytest.param("trace", TRACE, id="trace"),
        pytest.param("debug", logging.DEBUG, id="debug"),
        pytest.param("info", logging.INFO, id="info"),
        pytest.param("warn", logging.WARNING, id="warn"),
        pytest.param("error", logging.ERROR, id="error"),
        pytest.param("fatal", logging.CRITICAL, id="fatal"),
        pytest.param("panic", logging.CRITICAL, id="panic"),
        pytest.param("disabled", DISABLED, id="disabled"),
        pytest.param("WARN", logging.WARNING, id="upper-case"),
        pytest.param("Debug", logging.DEBUG, id="mixed-case"),
        pytest.param("-1", TRACE, id="numeric-trace"),
        pytest.param("0", logging.DEBUG, id="numeric-debug"),
        pytest.param("1", logging.INFO, id="numeric-info"),
        pytest.param("2", logging.WARNING, id="numeric-warn"),
        pytest.param("3", logging.ERROR, id="numeric-error"),
        pytest.param("4", logging.CRITICAL, id="numeric-fatal"),
        pytest.param("5", logging.CRITICAL, id="numeric-panic"),
        pytest.param("+2", logging.WARNING, id="numeric-plus-sign"),
        pytest.param("-0", logging.DEBUG, id="numeric-minus-zero"),
        pytest.param("003", logging.ERROR, id="numeric-leading-zeros"),
    ],
)
def test_log_level_setting(text: str, level: int) -> None:
    assert Settings.from_env({"WEBHOOK_LOG_LEVEL": text}).log_level == level


@pytest.mark.parametrize(
    ("text", "name"),
    [
        pytest.param("WARN", "warn", id="folded"),
        pytest.param("Disabled", "disabled", id="disabled"),
        pytest.param("-1", "trace", id="numeric-named"),
        pytest.param("5", "panic", id="numeric-panic"),
    ],
)
def test_parse_log_level_gives_the_zerolog_name(text: str, name: str) -> None:
    assert parse_log_level(text) == name


def test_level_ordering() -> None:
    assert TRACE < logging.DEBUG
    assert DISABLED > logging.CRITICAL


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("warning", id="python-name"),
        pytest.param("critical", id="python-critical"),
        pytest.param("6", id="numeric-above"),
        pytest.param("-2", id="numeric-below"),
        pytest.param(" 1", id="space-before-number"),
        pytest.param("1_0", id="underscore-number"),
        pytest.param("1.0", id="float"),
        pytest.param("", id="empty"),
        pytest.param("9" * 5000, id="huge-number"),
    ],
)
def test_parse_log_level_rejects(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_log_level(text)
    assert (
        str(caught.value) == "want trace, debug, info, warn, error, fatal, panic, disabled or -1..5"
    )


# --- addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        pytest.param(":8443", ("", 8443), id="port-only"),
        pytest.param("0.0.0.0:8443", ("0.0.0.0", 8443), id="ipv4"),
        pytest.param("localhost:9090", ("localhost", 9090), id="hostname"),
        pytest.param("[::1]:443", ("::1", 443), id="ipv6-bracketed"),
        pytest.param("[::]:0", ("::", 0), id="any-port"),
        pytest.param(":65535", ("", 65535), id="max-port"),
    ],
)
def test_parse_address(text: str, address: tuple[str, int]) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("8443", id="no-colon"),
        pytest.param(":", id="no-port"),
        pytest.param(":65536", id="port-too-big"),
        pytest.param(":-1", id="negative-port"),
        pytest.param(":https", id="named-port"),
        pytest.param("::1:443", id="unbracketed-ipv6"),
        pytest.param("[::1]", id="bracketed-without-port"),
        pytest.param("[::1:443", id="unclosed-bracket"),
        pytest.param("host :80", id="space-in-host"),
        pytest.param(": 80", id="space-in-port"),
    ],
)
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_address(text)
    assert str(caught.value) == "want host:port or :port with port 0-65535"


# --- Settings.from_env ----------------------------------------------------------------------------


def test_defaults() -> None:
    assert Settings.from_env({}) == Settings(
        kubeconfig=None,
        log_level=logging.INFO,
        tls_cert="/etc/cocoon/webhook/certs/tls.crt",
        tls_key="/etc/cocoon/webhook/certs/tls.key",
        listen_addr=("", 8443),
        metrics_addr=("", 9090),
        reaper_interval_s=300.0,
        reaper_grace_s=1800.0,
        mutate_deadline_s=3.0,
        inflight_window_s=30.0,
        shutdown_delay_s=5.0,
        head_timeout_s=10.0,
        body_timeout_s=10.0,
        idle_timeout_s=120.0,
        max_connections=1024,
        client_ca=None,
        max_unconfirmed_per_namespace=1000,
    )


_VARIABLES = (
    "KUBECONFIG",
    "WEBHOOK_LOG_LEVEL",
    "TLS_CERT",
    "TLS_KEY",
    "LISTEN_ADDR",
    "METRICS_ADDR",
    "REAPER_INTERVAL",
    "REAPER_GRACE",
    "MUTATE_DEADLINE",
    "AFFINITY_INFLIGHT_WINDOW",
    "SHUTDOWN_DELAY",
    "REQUEST_HEAD_TIMEOUT",
    "REQUEST_BODY_TIMEOUT",
    "IDLE_TIMEOUT",
    "MAX_CONNECTIONS",
    "CLIENT_CA",
    "AFFINITY_MAX_UNCONFIRMED_PER_NAMESPACE",
    "WORKERS",
)
_ALL_EMPTY = dict.fromkeys(_VARIABLES, "")


def test_empty_values_mean_defaults() -> None:
    assert Settings.from_env(_ALL_EMPTY) == Settings.from_env({})


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        pytest.param({"KUBECONFIG": "/a:/b"}, "kubeconfig", "/a:/b", id="kubeconfig"),
        pytest.param({"WEBHOOK_LOG_LEVEL": "DEBUG"}, "log_level", logging.DEBUG, id="level"),
        pytest.param({"WEBHOOK_LOG_LEVEL": "2"}, "log_level", logging.WARNING, id="level-number"),
        pytest.param({"TLS_CERT": "/c.pem"}, "tls_cert", "/c.pem", id="tls-cert"),
        pytest.param({"TLS_KEY": "/k.pem"}, "tls_key", "/k.pem", id="tls-key"),
        pytest.param(
            {"LISTEN_ADDR": "127.0.0.1:0"}, "listen_addr", ("127.0.0.1", 0), id="listen-addr"
        ),
        pytest.param(
            {"METRICS_ADDR": "[::]:9100"}, "metrics_addr", ("::", 9100), id="metrics-addr"
        ),
        pytest.param({"REAPER_INTERVAL": "90s"}, "reaper_interval_s", 90.0, id="interval"),
        pytest.param({"REAPER_GRACE": "1h30m"}, "reaper_grace_s", 5400.0, id="grace"),
        pytest.param(
            {"MUTATE_DEADLINE": "4.999s"}, "mutate_deadline_s", 4.999, id="deadline-just-below-5s"
        ),
        pytest.param({"MUTATE_DEADLINE": "1ns"}, "mutate_deadline_s", 1e-9, id="deadline-tiny"),
        pytest.param(
            {"AFFINITY_INFLIGHT_WINDOW": "29m59s"},
            "inflight_window_s",
            1799.0,
            id="window-just-below-grace",
        ),
        pytest.param(
            {"REAPER_GRACE": "2h", "AFFINITY_INFLIGHT_WINDOW": "1h"},
            "inflight_window_s",
            3600.0,
            id="window-below-raised-grace",
        ),
        pytest.param({"SHUTDOWN_DELAY": "0s"}, "shutdown_delay_s", 0.0, id="no-shutdown-delay"),
        pytest.param({"SHUTDOWN_DELAY": "12s"}, "shutdown_delay_s", 12.0, id="shutdown-delay"),
        pytest.param({"WORKERS": "1"}, "kubeconfig", None, id="workers-one"),
        pytest.param({"REQUEST_HEAD_TIMEOUT": "2s"}, "head_timeout_s", 2.0, id="head-timeout"),
        pytest.param({"REQUEST_BODY_TIMEOUT": "1m"}, "body_timeout_s", 60.0, id="body-timeout"),
        pytest.param({"IDLE_TIMEOUT": "500ms"}, "idle_timeout_s", 0.5, id="idle-timeout"),
        pytest.param({"MAX_CONNECTIONS": "64"}, "max_connections", 64, id="max-connections"),
        pytest.param({"CLIENT_CA": "/ca.pem"}, "client_ca", "/ca.pem", id="client-ca"),
        pytest.param(
            {"AFFINITY_MAX_UNCONFIRMED_PER_NAMESPACE": "5"},
            "max_unconfirmed_per_namespace",
            5,
            id="max-unconfirmed",
        ),
    ],
)
def test_from_env_reads(env: dict[str, str], field: str, value: Any) -> None:
    assert getattr(Settings.from_env(env), field) == value


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"WEBHOOK_LOG_LEVEL": "verbose"},
            'invalid WEBHOOK_LOG_LEVEL "verbose": want trace, debug, info, warn, error, '
            "fatal, panic, disabled or -1..5",
            id="level-name",
        ),
        pytest.param(
            {"WEBHOOK_LOG_LEVEL": "6"},
            'invalid WEBHOOK_LOG_LEVEL "6": want trace, debug, info, warn, error, '
            "fatal, panic, disabled or -1..5",
            id="level-number",
        ),
        pytest.param(
            {"LISTEN_ADDR": "8443"},
            'invalid LISTEN_ADDR "8443": want host:port or :port with port 0-65535',
            id="listen-addr",
        ),
        pytest.param(
            {"METRICS_ADDR": ":99999"},
            'invalid METRICS_ADDR ":99999": want host:port or :port with port 0-65535',
            id="metrics-addr",
        ),
        pytest.param(
            {"REAPER_INTERVAL": "300"},
            'invalid REAPER_INTERVAL "300": missing unit (use e.g. 90s, 5m, 1h30m)',
            id="interval-unitless",
        ),
        pytest.param(
            {"REAPER_INTERVAL": "5 minutes"},
            'invalid REAPER_INTERVAL "5 minutes": unknown unit " minutes" '
            "(use e.g. 90s, 5m, 1h30m)",
            id="interval-unknown-unit",
        ),
        pytest.param(
            {"REAPER_INTERVAL": "0"}, 'invalid REAPER_INTERVAL "0": must be > 0', id="interval-zero"
        ),
        pytest.param(
            {"REAPER_INTERVAL": "-5m"},
            'invalid REAPER_INTERVAL "-5m": must be > 0',
            id="interval-negative",
        ),
        pytest.param(
            {"REAPER_GRACE": "abc"},
            'invalid REAPER_GRACE "abc": not a duration (use e.g. 90s, 5m, 1h30m)',
            id="grace-garbage",
        ),
        pytest.param(
            {"REAPER_GRACE": "0s"}, 'invalid REAPER_GRACE "0s": must be > 0', id="grace-zero"
        ),
        pytest.param(
            {"REAPER_GRACE": "3000000h"},
            'invalid REAPER_GRACE "3000000h": out of range (at most about 292 years) '
            "(use e.g. 90s, 5m, 1h30m)",
            id="grace-overflow",
        ),
        pytest.param(
            {"MUTATE_DEADLINE": "5s"},
            'invalid MUTATE_DEADLINE "5s": must be < 5s',
            id="deadline-at-limit",
        ),
        pytest.param(
            {"MUTATE_DEADLINE": "1m"},
            'invalid MUTATE_DEADLINE "1m": must be < 5s',
            id="deadline-above-limit",
        ),
        pytest.param(
            {"MUTATE_DEADLINE": "-0"},
            'invalid MUTATE_DEADLINE "-0": must be > 0',
            id="deadline-zero",
        ),
        pytest.param(
            {"AFFINITY_INFLIGHT_WINDOW": "30m"},
            'invalid AFFINITY_INFLIGHT_WINDOW "30m": must be < REAPER_GRACE (30m0s)',
            id="window-equals-grace",
        ),
        pytest.param(
            {"REAPER_GRACE": "10s"},
            'invalid AFFINITY_INFLIGHT_WINDOW "30s": must be < REAPER_GRACE (10s)',
            id="default-window-above-short-grace",
        ),
        pytest.param(
            {"AFFINITY_INFLIGHT_WINDOW": "0s"},
            'invalid AFFINITY_INFLIGHT_WINDOW "0s": must be > 0',
            id="window-zero",
        ),
        pytest.param(
            {"SHUTDOWN_DELAY": "-1s"},
            'invalid SHUTDOWN_DELAY "-1s": must be >= 0',
            id="shutdown-delay-negative",
        ),
        pytest.param(
            {"WORKERS": "2"},
            'invalid WORKERS "2": must be 1 (shared state lives in one process)',
            id="workers-two",
        ),
        pytest.param(
            {"WORKERS": "01"},
            'invalid WORKERS "01": must be 1 (shared state lives in one process)',
            id="workers-padded",
        ),
        pytest.param(
            {"MAX_CONNECTIONS": "0"},
            'invalid MAX_CONNECTIONS "0": want a whole number >= 1',
            id="max-connections-zero",
        ),
        pytest.param(
            {"AFFINITY_MAX_UNCONFIRMED_PER_NAMESPACE": "1_000"},
            'invalid AFFINITY_MAX_UNCONFIRMED_PER_NAMESPACE "1_000": want a whole number >= 1',
            id="max-unconfirmed-underscore",
        ),
        pytest.param(
            {"IDLE_TIMEOUT": "0s"},
            'invalid IDLE_TIMEOUT "0s": must be > 0',
            id="idle-zero",
        ),
        pytest.param(
            {"REAPER_INTERVAL": "5m\n"},
            'invalid REAPER_INTERVAL "5m\\n": unknown unit "m\\n" (use e.g. 90s, 5m, 1h30m)',
            id="value-quoted-on-one-line",
        ),
    ],
)
def test_from_env_rejects(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_first_invalid_variable_in_table_order_wins() -> None:
    env = {
        "WORKERS": "3",
        "AFFINITY_INFLIGHT_WINDOW": "x",
        "MUTATE_DEADLINE": "x",
        "REAPER_GRACE": "x",
        "REAPER_INTERVAL": "x",
        "METRICS_ADDR": "x",
        "LISTEN_ADDR": "x",
        "WEBHOOK_LOG_LEVEL": "x",
    }
    order = []
    while True:
        try:
            Settings.from_env(env)
        except ConfigError as error:
            order.append(error.name)
            del env[error.name]
        else:
            break
    assert order == [
        "WEBHOOK_LOG_LEVEL",
        "LISTEN_ADDR",
        "METRICS_ADDR",
        "REAPER_INTERVAL",
        "REAPER_GRACE",
        "MUTATE_DEADLINE",
        "AFFINITY_INFLIGHT_WINDOW",
        "WORKERS",
    ]


def test_config_error_carries_its_parts() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"REAPER_INTERVAL": "300"})
    error = caught.value
    assert (error.name, error.value) == ("REAPER_INTERVAL", "300")
    assert error.reason == "missing unit (use e.g. 90s, 5m, 1h30m)"
    assert isinstance(error, ValueError)


def test_the_process_reads_environ_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAPER_INTERVAL", "90s")
    runtime.reset()
    try:
        first = runtime.process().settings
        monkeypatch.setenv("REAPER_INTERVAL", "not read again")
        assert runtime.process().settings is first
        assert first.reaper_interval_s == 90.0
    finally:
        runtime.reset()


def test_load_settings_fails_on_bad_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKERS", "4")
    with pytest.raises(ConfigError) as caught:
        config.load_settings()
    assert caught.value.name == "WORKERS"


def test_cache_silence_zero_turns_the_caches_off_and_is_capped_by_the_window() -> None:
    assert Settings.from_env({}).cache_silence_limit_s == 15.0
    assert Settings.from_env({"AFFINITY_INFLIGHT_WINDOW": "10s"}).cache_silence_limit_s == 5.0
    assert Settings.from_env({}).caches_enabled
    assert not Settings.from_env({"CACHE_MAX_SILENCE": "0s"}).caches_enabled
    with pytest.raises(ConfigError) as bad:
        Settings.from_env({"CACHE_MAX_SILENCE": "-1s"})
    assert str(bad.value) == 'invalid CACHE_MAX_SILENCE "-1s": must be >= 0'
