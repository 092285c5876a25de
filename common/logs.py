"""JSON-lines logging on stdout (SPEC 10): one object per line, context as top-level keys."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from common.gocompat import TRACE, go_text

logging.addLevelName(TRACE, "TRACE")

_LEVEL_NAMES = {
    TRACE: "trace",
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}
# Attributes every LogRecord has; anything else came in through `extra=` and is context.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
ROOT_LOGGER = "cocoon_webhook"


def timestamp(seconds: float) -> str:
    """RFC 3339 UTC to the millisecond, as every log line of ours carries it."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    """What came in through `extra=`: the record's attributes that every LogRecord lacks."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _RESERVED and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": timestamp(record.created),
            "level": _LEVEL_NAMES.get(record.levelno, record.levelname.lower()),
            "msg": record.getMessage(),
        }
        entry.update(context_of(record))
        if record.exc_info and record.exc_info[1] is not None:
            entry.setdefault("error", " ".join(str(record.exc_info[1]).split()))
        # A value from a review may hold a lone surrogate, which stdout's UTF-8 cannot write.
        return go_text(json.dumps(entry, default=str, ensure_ascii=False))


def setup_logging(level: int) -> None:
    """Route our loggers to stdout as JSON at `level`; idempotent (function reloads call it)."""
    logger = logging.getLogger(ROOT_LOGGER)
    logger.setLevel(level)
    logger.propagate = False
    if not any(getattr(h, "_cocoon", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        handler._cocoon = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{ROOT_LOGGER}.{name}")
