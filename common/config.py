"""Process settings (SPEC 10): parsed once from the environment, every rule checked up front.

`Settings.from_env` is pure and takes any mapping, so the whole table is tested without touching
`os.environ`. `load_settings` is the one impure helper: function modules call it at import, so a bad
value fails module load and the revision never becomes Ready. Messages name the variable, the value
and the expected form, because the operator reading a crash-looping pod's log has nothing else.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from common.decode_errors import Unreadable
from common.gocompat import TRACE, go_quote

# --- Go durations -----------------------------------------------------------------------------

NANOSECOND: Final = 1
MICROSECOND: Final = 1_000 * NANOSECOND
MILLISECOND: Final = 1_000 * MICROSECOND
SECOND: Final = 1_000 * MILLISECOND
MINUTE: Final = 60 * SECOND
HOUR: Final = 60 * MINUTE

_UNITS: Final = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "µs": MICROSECOND,  # U+00B5 MICRO SIGN
    "μs": MICROSECOND,  # U+03BC GREEK SMALL LETTER MU
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_DIGITS: Final = "0123456789"
# time.Duration is an int64 count of nanoseconds: about 292 years either way.
_MAX_NS: Final = 2**63 - 1
_MIN_NS: Final = -(2**63)


class DurationError(Unreadable):
    """Text that time.ParseDuration would reject; `reason` says why in a few words."""


def parse_go_duration(text: str) -> int:
    """Parse Go duration syntax (`90s`, `1h30m`, `1.5h`, `-.5s`, `0`) into integer nanoseconds.

    Follows time.ParseDuration's grammar and limits, except that fractions are computed exactly
    (rounded toward zero) where Go goes through float64; the two agree on every sane input.
    """
    rest = text
    negative = False
    if rest[:1] in ("+", "-"):
        negative = rest[0] == "-"
        rest = rest[1:]
    # Go's one unitless exception, so that a zero value prints and parses back.
    if rest == "0":
        return 0
    if rest == "":
        raise DurationError("empty duration" if text == "" else "not a duration")

    total = 0
    while rest:
        # <digits>? ("." <digits>?)? with at least one digit on either side of the point.
        i = 0
        while i < len(rest) and rest[i] in _DIGITS:
            i += 1
        whole, rest = rest[:i], rest[i:]
        fraction = ""
        if rest[:1] == ".":
            j = 1
            while j < len(rest) and rest[j] in _DIGITS:
                j += 1
            fraction, rest = rest[1:j], rest[j:]
        if whole == "" and fraction == "":
            raise DurationError("not a duration")

        # The unit runs up to the next digit or point, so `1 h` asks for unit " h".
        k = 0
        while k < len(rest) and rest[k] not in _DIGITS and rest[k] != ".":
            k += 1
        unit, rest = rest[:k], rest[k:]
        if unit == "":
            raise DurationError("missing unit")
        size = _UNITS.get(unit)
        if size is None:
            raise DurationError(f"unknown unit {go_quote(unit)}")

        # Checked before int(): Python refuses to convert strings of more than 4300 digits, and
        # anything past 20 significant digits overflows int64 nanoseconds anyway.
        if len(whole.lstrip("0")) > 20:
            raise DurationError("out of range (at most about 292 years)")
        total += int(whole or "0") * size
        if fraction:
            # Go stops reading fraction digits at int64 precision; so do we, which keeps the
            # result within a nanosecond of exact.
            digits = fraction[:19]
            total += int(digits) * size // 10 ** len(digits)
        if total > _MAX_NS + 1:
            raise DurationError("out of range (at most about 292 years)")

    value = -total if negative else total
    if not _MIN_NS <= value <= _MAX_NS:
        raise DurationError("out of range (at most about 292 years)")
    return value


def _decimal(value: int, places: int) -> str:
    whole, part = divmod(value, 10**places)
    digits = f"{part:0{places}d}".rstrip("0") if places else ""
    return f"{whole}.{digits}" if digits else str(whole)


def format_go_duration(ns: int) -> str:
    """Format nanoseconds as Go's Duration.String does (`1m30s`, `1.5s`, `300ms`, `0s`)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    magnitude = abs(ns)
    if magnitude < MICROSECOND:
        return f"{sign}{magnitude}ns"
    if magnitude < MILLISECOND:
        return f"{sign}{_decimal(magnitude, 3)}µs"
    if magnitude < SECOND:
        return f"{sign}{_decimal(magnitude, 6)}ms"
    text = _decimal(magnitude % MINUTE, 9) + "s"
    minutes = magnitude // MINUTE
    if minutes:
        text = f"{minutes % 60}m{text}"
        if minutes >= 60:
            text = f"{minutes // 60}h{text}"
    return sign + text


# --- Log levels -------------------------------------------------------------------------------

# Above every level anything logs at: `disabled` silences even critical records.
DISABLED: Final = logging.CRITICAL + 10

_LEVELS: Final = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
    "disabled": DISABLED,
}
# zerolog's numbering, which WEBHOOK_LOG_LEVEL also accepts.
_NUMERIC_LEVELS: Final = {
    -1: "trace",
    0: "debug",
    1: "info",
    2: "warn",
    3: "error",
    4: "fatal",
    5: "panic",
}
_SIGNED_INT: Final = re.compile("[+-]?[0-9]+")
LEVEL_FORM: Final = "want trace, debug, info, warn, error, fatal, panic, disabled or -1..5"


def parse_log_level(text: str) -> str:
    """The zerolog level `text` names (case-insensitive, or -1..5); ValueError otherwise."""
    name = text.casefold()
    if name in _LEVELS:
        return name
    # strconv.Atoi's syntax: a sign and ASCII digits, nothing else (int() would allow " 1", "1_0").
    # Leading zeros stripped first so that a pathological value cannot hit int()'s digit limit.
    if _SIGNED_INT.fullmatch(text) and len(text.lstrip("+-").lstrip("0")) <= 2:
        number = int(text)
        if number in _NUMERIC_LEVELS:
            return _NUMERIC_LEVELS[number]
    raise ValueError(LEVEL_FORM)


# --- Addresses --------------------------------------------------------------------------------

ADDRESS_FORM: Final = "want host:port or :port with port 0-65535"


def parse_address(text: str) -> tuple[str, int]:
    """Split `host:port`, `:port` or `[v6]:port` as net.SplitHostPort does; port must be numeric."""
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]:")
        if not bracket or "]" in host or "[" in host:
            raise ValueError(ADDRESS_FORM)
    else:
        host, colon, port = text.rpartition(":")
        # An unbracketed IPv6 literal is ambiguous: which colon starts the port?
        if not colon or ":" in host or "[" in host or "]" in host:
            raise ValueError(ADDRESS_FORM)
    if not re.fullmatch("[0-9]{1,5}", port) or int(port) > 65535:
        raise ValueError(ADDRESS_FORM)
    if any(ch.isspace() for ch in host):
        raise ValueError(ADDRESS_FORM)
    return host, int(port)


# --- Settings ---------------------------------------------------------------------------------

_T = TypeVar("_T")

DURATION_FORM: Final = "use e.g. 90s, 5m, 1h30m"
WORKERS_RULE: Final = "must be 1 (shared state lives in one process)"
# The API server gives up on a webhook after 5 s (the configurations' timeoutSeconds).
MUTATE_DEADLINE_LIMIT_NS: Final = 5 * SECOND

DEFAULT_LOG_LEVEL: Final = "info"
DEFAULT_TLS_CERT: Final = "/etc/cocoon/webhook/certs/tls.crt"
DEFAULT_TLS_KEY: Final = "/etc/cocoon/webhook/certs/tls.key"
DEFAULT_LISTEN_ADDR: Final = ":8443"
DEFAULT_METRICS_ADDR: Final = ":9090"
DEFAULT_REAPER_INTERVAL: Final = "5m"
DEFAULT_REAPER_GRACE: Final = "30m"
DEFAULT_MUTATE_DEADLINE: Final = "3s"
DEFAULT_INFLIGHT_WINDOW: Final = "30s"
# Endpoints of a terminating pod take a few seconds to leave every client's view (EndpointSlice
# controller, kube-proxy, the API server's service resolver); new connections keep coming meanwhile.
DEFAULT_SHUTDOWN_DELAY: Final = "5s"
DEFAULT_HEAD_TIMEOUT: Final = "10s"
DEFAULT_BODY_TIMEOUT: Final = "10s"
# Longer than Go's client-side idle timeout (90 s): if the server closed first, a POST racing
# the close would fail and count against failurePolicy.
DEFAULT_IDLE_TIMEOUT: Final = "120s"
DEFAULT_MAX_CONNECTIONS: Final = "1024"
# A Deployment scaled up by hundreds stays well under it; a flood of forged reviews does not.
DEFAULT_MAX_UNCONFIRMED: Final = "1000"
COUNT_FORM: Final = "want a whole number >= 1"
DEFAULT_CACHE_MAX_SILENCE: Final = "15s"


class ConfigError(ValueError):
    """One invalid variable: `invalid NAME "value": reason`, a single line for the startup log."""

    def __init__(self, name: str, value: str, reason: str) -> None:
        super().__init__(f"invalid {name} {go_quote(value)}: {reason}")
        self.name = name
        self.value = value
        self.reason = reason


@dataclass(frozen=True)
class Settings:
    kubeconfig: str | None
    log_level: int
    tls_cert: str
    tls_key: str
    listen_addr: tuple[str, int]
    metrics_addr: tuple[str, int]
    reaper_interval_s: float
    reaper_grace_s: float
    mutate_deadline_s: float
    inflight_window_s: float
    shutdown_delay_s: float
    head_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    idle_timeout_s: float = 120.0
    max_connections: int = 1024
    client_ca: str | None = None
    max_unconfirmed_per_namespace: int = 1000
    cache_max_silence_s: float = 15.0

    @property
    def caches_enabled(self) -> bool:
        """CACHE_MAX_SILENCE=0 turns mutate's caches off: every admission reads the API."""
        return self.cache_max_silence_s > 0

    @property
    def cache_silence_limit_s(self) -> float:
        """How long a cache may hear nothing before mutate stops trusting it. Capped at half
        the in-flight window: a pod the pod cache has not seen yet is only protected by its
        claim, which must outlive the cache's lag."""
        return min(self.cache_max_silence_s, self.inflight_window_s / 2)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Check every variable in SPEC 10's table order; raise ConfigError for the first bad one.

        An empty value means the default, as an unset one does: manifests often template `""`.
        """

        def raw(name: str, default: str) -> str:
            return env.get(name) or default

        def check(name: str, default: str, parse: Callable[[str], _T]) -> _T:
            value = raw(name, default)
            try:
                return parse(value)
            except ValueError as error:
                raise ConfigError(name, value, str(error)) from None

        def duration(
            name: str,
            default: str,
            *,
            below: tuple[int, str] | None = None,
            zero_ok: bool = False,
        ) -> int:
            value = raw(name, default)
            try:
                ns = parse_go_duration(value)
            except DurationError as error:
                raise ConfigError(name, value, f"{error.reason} ({DURATION_FORM})") from None
            if ns < 0 or (ns == 0 and not zero_ok):
                raise ConfigError(name, value, "must be >= 0" if zero_ok else "must be > 0")
            if below is not None and ns >= below[0]:
                raise ConfigError(name, value, f"must be < {below[1]}")
            return ns

        kubeconfig = env.get("KUBECONFIG") or None
        level_name = check("WEBHOOK_LOG_LEVEL", DEFAULT_LOG_LEVEL, parse_log_level)
        tls_cert = raw("TLS_CERT", DEFAULT_TLS_CERT)
        tls_key = raw("TLS_KEY", DEFAULT_TLS_KEY)
        listen_addr = check("LISTEN_ADDR", DEFAULT_LISTEN_ADDR, parse_address)
        metrics_addr = check("METRICS_ADDR", DEFAULT_METRICS_ADDR, parse_address)
        interval = duration("REAPER_INTERVAL", DEFAULT_REAPER_INTERVAL)
        grace = duration("REAPER_GRACE", DEFAULT_REAPER_GRACE)
        deadline = duration(
            "MUTATE_DEADLINE",
            DEFAULT_MUTATE_DEADLINE,
            below=(MUTATE_DEADLINE_LIMIT_NS, format_go_duration(MUTATE_DEADLINE_LIMIT_NS)),
        )
        # A claim older than the grace may be reaped; one still "in flight" must not be.
        window = duration(
            "AFFINITY_INFLIGHT_WINDOW",
            DEFAULT_INFLIGHT_WINDOW,
            below=(grace, f"REAPER_GRACE ({format_go_duration(grace)})"),
        )
        shutdown_delay = duration("SHUTDOWN_DELAY", DEFAULT_SHUTDOWN_DELAY, zero_ok=True)
        head = duration("REQUEST_HEAD_TIMEOUT", DEFAULT_HEAD_TIMEOUT)
        body = duration("REQUEST_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT)
        idle = duration("IDLE_TIMEOUT", DEFAULT_IDLE_TIMEOUT)
        max_connections = check("MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, _count)
        client_ca = env.get("CLIENT_CA") or None
        max_unconfirmed = check(
            "AFFINITY_MAX_UNCONFIRMED_PER_NAMESPACE", DEFAULT_MAX_UNCONFIRMED, _count
        )
        silence = duration("CACHE_MAX_SILENCE", DEFAULT_CACHE_MAX_SILENCE, zero_ok=True)
        # gunicorn workers are processes: a second one would have its own client and readiness.
        workers = env.get("WORKERS") or ""
        if workers not in ("", "1"):
            raise ConfigError("WORKERS", workers, WORKERS_RULE)

        return cls(
            kubeconfig=kubeconfig,
            log_level=_LEVELS[level_name],
            tls_cert=tls_cert,
            tls_key=tls_key,
            listen_addr=listen_addr,
            metrics_addr=metrics_addr,
            reaper_interval_s=interval / SECOND,
            reaper_grace_s=grace / SECOND,
            mutate_deadline_s=deadline / SECOND,
            inflight_window_s=window / SECOND,
            shutdown_delay_s=shutdown_delay / SECOND,
            head_timeout_s=head / SECOND,
            body_timeout_s=body / SECOND,
            idle_timeout_s=idle / SECOND,
            max_connections=max_connections,
            client_ca=client_ca,
            max_unconfirmed_per_namespace=max_unconfirmed,
            cache_max_silence_s=silence / SECOND,
        )


def _count(text: str) -> int:
    # Digits only, and few of them: int() would accept " 1", "1_000" and 10,000-digit values.
    if not re.fullmatch("[0-9]{1,9}", text) or int(text) < 1:
        raise ValueError(COUNT_FORM)
    return int(text)


def load_settings() -> Settings:
    """Settings from this process's environment, parsed on first call and shared after."""
    return Settings.from_env(os.environ)
