"""Logging set-up for the entry points: one event per line, extras as key=value, secrets masked."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from typing import TextIO

MASK = "********"
# Attributes every LogRecord has; anything else on a record came from `extra`.
STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
QUIET_LIBRARIES = ("slack_sdk", "slack_bolt", "httpx", "httpcore", "aiohttp.access", "asyncio")


class EventFormatter(logging.Formatter):
    """Format `event key=value …` lines and replace every known secret with a mask."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted((secret for secret in secrets if secret), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{key}={value!r}" for key, value in vars(record).items() if key not in STANDARD_ATTRIBUTES)
        if extras:
            line = f"{line} {extras}" if "\n" not in line else line.replace("\n", f" {extras}\n", 1)
        return self._mask(line)

    def _mask(self, line: str) -> str:
        for secret in self._secrets:
            line = line.replace(secret, MASK)
        return line


class JsonFormatter(EventFormatter):
    """Format one JSON object per line: time, level, logger, event, the extras, and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in STANDARD_ATTRIBUTES:
                continue
            # An extra named like a base field (level, time, ...) keeps the base field intact.
            entry[f"extra_{key}" if key in entry else key] = _plain(value)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return self._mask(json.dumps(entry, ensure_ascii=False))


def _plain(value: object) -> object:
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else repr(value)


def configure_logging(level: str, *, secrets: Iterable[str] = (), stream: TextIO | None = None, json_lines: bool = False) -> None:
    """Send log records to `stream` (default stderr) at `level`, masking `secrets`; JSON lines when asked."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if json_lines else EventFormatter(secrets))

    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)

    # Library output can include request bodies and response URLs (Bolt logs a rejected request's body
    # at INFO), so libraries log warnings and errors only.
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.getLevelName(level), logging.WARNING))
