"""Parsing of the text typed after the slash command into a command object.

`parse_command()` is pure: it reads the words and validates identifiers, and
raises `InputError` with a message that names the value and the fix. Keywords
(`help`, `failed`) take precedence over assistant names; an assistant called
`failed` is still reachable by its SID.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.errors import InputError, InvalidIdentifierError
from bot.identifiers import validate_assistant, validate_build
from bot.state.base import Level

DEFAULT_WINDOW = "24h"
MAX_WINDOW = timedelta(days=90)
MAX_MUTE = timedelta(days=30)
DEFAULT_TIMEZONE = "UTC"
TIME_OF_DAY = re.compile(r"(?P<hour>[01]?\d|2[0-3]):(?P<minute>[0-5]\d)")
ALL = "all"
LEVELS = ("failures", "all")
WINDOW = re.compile(r"(?P<amount>\d{1,5})(?P<unit>[mhd])")
WINDOW_UNITS = {"m": "minutes", "h": "hours", "d": "days"}

STATUS_ALIASES = {
    "enqueued": "enqueued",
    "queued": "enqueued",
    "building": "building",
    "running": "building",
    "completed": "completed",
    "complete": "completed",
    "ok": "completed",
    "succeeded": "completed",
    "success": "completed",
    "failed": "failed",
    "failures": "failed",
    "failure": "failed",
    "canceled": "canceled",
    "cancelled": "canceled",
}


@dataclass(frozen=True, slots=True)
class Help:
    """Show usage and examples."""


@dataclass(frozen=True, slots=True)
class AssistantBuilds:
    """Show the latest builds of one assistant, optionally only one status."""

    assistant: str
    status: str | None = None


@dataclass(frozen=True, slots=True)
class FailedBuilds:
    """Show failed builds across the assistants in scope within a time window."""

    window: timedelta
    window_text: str = DEFAULT_WINDOW


@dataclass(frozen=True, slots=True)
class Overview:
    """Show one line per assistant in scope, red first."""


@dataclass(frozen=True, slots=True)
class BuildDetails:
    """Show one build of one assistant."""

    assistant: str
    build: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Subscribe the channel to alerts of one assistant, or of `all`, at a level."""

    assistant: str
    level: Level = "failures"


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """End the channel's subscription to one assistant, or to `all`."""

    assistant: str


@dataclass(frozen=True, slots=True)
class ListSubscriptions:
    """List the channel's subscriptions and their delivery state."""


@dataclass(frozen=True, slots=True)
class MuteAssistant:
    """Mute alerts of an assistant in the channel for a while."""

    assistant: str
    duration: timedelta
    duration_text: str


@dataclass(frozen=True, slots=True)
class UnmuteAssistant:
    """End a mute early."""

    assistant: str


@dataclass(frozen=True, slots=True)
class SetDigest:
    """Send the channel a daily summary at a local time of day."""

    time_of_day: str
    timezone: str = DEFAULT_TIMEZONE


@dataclass(frozen=True, slots=True)
class DigestOff:
    """Stop the channel's daily summary."""


StateCommand = Subscribe | Unsubscribe | ListSubscriptions | MuteAssistant | UnmuteAssistant | SetDigest | DigestOff
Command = Help | AssistantBuilds | FailedBuilds | BuildDetails | Overview | StateCommand


def parse_command(text: str) -> Command:
    """Parse the words after the slash command, raising `InputError` when they make no command."""
    words = text.split()
    if not words or words[0].lower() == "help":
        return Help()

    keyword = words[0].lower()
    if keyword == "failed":
        return _parse_failed(words[1:])
    if keyword == "status":
        if len(words) > 1:
            raise InputError("`status` takes no arguments: it shows every assistant in scope.")
        return Overview()
    if keyword in STATE_PARSERS:
        return STATE_PARSERS[keyword](words[1:])

    if len(words) > 2:
        raise InputError(f"Too many words in {_quoted(text)}: give an assistant, then optionally a status or a build.")

    assistant = validate_assistant(words[0])
    if len(words) == 1:
        return AssistantBuilds(assistant)
    return _parse_second_word(assistant, words[1])


def command_label(text: str) -> str:
    """Return a short name of the command in `text` for metrics, such as `failed_builds`, or `invalid`."""
    try:
        command = parse_command(text)
    except InputError:
        return "invalid"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(command).__name__).lower()


def parse_window(text: str) -> timedelta:
    """Parse a window such as `30m`, `6h` or `7d`, raising `InputError` when it is invalid."""
    match = WINDOW.fullmatch(text.lower())
    if match is None:
        raise InputError(f"{_quoted(text)} is not a time window. Use minutes, hours or days, such as 30m, 6h or 7d.")

    amount = int(match["amount"])
    window = timedelta(**{WINDOW_UNITS[match["unit"]]: amount})
    if amount == 0 or window > MAX_WINDOW:
        raise InputError(f"The window {_quoted(text)} is out of range. Use from 1m up to {MAX_WINDOW.days}d.")
    return window


def _parse_failed(words: list[str]) -> FailedBuilds:
    if len(words) > 1:
        raise InputError(f"`failed` takes at most one time window, such as 6h, but got {_quoted(' '.join(words))}.")

    window_text = words[0].lower() if words else DEFAULT_WINDOW
    return FailedBuilds(parse_window(window_text), window_text)


def _parse_second_word(assistant: str, word: str) -> AssistantBuilds | BuildDetails:
    status = STATUS_ALIASES.get(word.lower())
    if status is not None:
        return AssistantBuilds(assistant, status)

    try:
        return BuildDetails(assistant, validate_build(word))
    except InvalidIdentifierError as error:
        statuses = ", ".join(sorted(set(STATUS_ALIASES.values())))
        raise InputError(f"{error} Or filter by a status: {statuses}.") from error


def _parse_subscribe(words: list[str]) -> Subscribe:
    if not 1 <= len(words) <= 2:
        raise InputError("Use `subscribe <assistant|all> [failures|all]`, for example `subscribe support-bot`.")

    word = words[1].lower() if len(words) == 2 else "failures"
    if word not in LEVELS:
        raise InputError(f"{_quoted(words[1])} is not an alert level. Use `failures` (failures, recoveries, stuck builds) or `all` (also every completed build).")
    level: Level = "all" if word == "all" else "failures"
    return Subscribe(_assistant_or_all(words[0]), level)


def _parse_unsubscribe(words: list[str]) -> Unsubscribe:
    if len(words) != 1:
        raise InputError("Use `unsubscribe <assistant|all>`, for example `unsubscribe support-bot`.")
    return Unsubscribe(_assistant_or_all(words[0]))


def _parse_subscriptions(words: list[str]) -> ListSubscriptions:
    if words:
        raise InputError("`subscriptions` takes no arguments: it lists this channel's subscriptions.")
    return ListSubscriptions()


def _parse_mute(words: list[str]) -> MuteAssistant:
    if len(words) != 2:
        raise InputError("Use `mute <assistant> <duration>`, for example `mute support-bot 2h`.")

    duration = parse_window(words[1])
    if duration > MAX_MUTE:
        raise InputError(f"A mute lasts at most {MAX_MUTE.days}d, so {_quoted(words[1])} is too long.")
    return MuteAssistant(validate_assistant(words[0]), duration, words[1].lower())


def _parse_unmute(words: list[str]) -> UnmuteAssistant:
    if len(words) != 1:
        raise InputError("Use `unmute <assistant>`, for example `unmute support-bot`.")
    return UnmuteAssistant(validate_assistant(words[0]))


def _assistant_or_all(word: str) -> str:
    return ALL if word.lower() == ALL else validate_assistant(word)


def _parse_digest(words: list[str]) -> SetDigest | DigestOff:
    if len(words) == 1 and words[0].lower() == "off":
        return DigestOff()
    if not 1 <= len(words) <= 2:
        raise InputError("Use `digest <HH:MM> [timezone]`, for example `digest 09:00 Europe/Berlin`, or `digest off`.")

    match = TIME_OF_DAY.fullmatch(words[0])
    if match is None:
        raise InputError(f"{_quoted(words[0])} is not a time of day. Use 24-hour HH:MM, such as 09:00 or 17:30.")
    timezone = words[1] if len(words) == 2 else DEFAULT_TIMEZONE
    if not _is_timezone(timezone):
        raise InputError(f"{_quoted(timezone)} is not a known timezone. Use an IANA name such as Europe/Berlin, America/New_York or UTC.")
    return SetDigest(f"{int(match['hour']):02d}:{match['minute']}", timezone)


def _is_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


STATE_PARSERS = {
    "digest": _parse_digest,
    "subscribe": _parse_subscribe,
    "unsubscribe": _parse_unsubscribe,
    "subscriptions": _parse_subscriptions,
    "mute": _parse_mute,
    "unmute": _parse_unmute,
}


def _quoted(text: str) -> str:
    shown = text if len(text) <= 60 else text[:59] + "…"
    return repr(shown)
