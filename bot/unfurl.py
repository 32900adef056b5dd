"""Link previews: a pasted model-build or assistant URL of the configured API, summarised by the bot.

Only URLs whose scheme, host and port equal those of `AUTOPILOT_BASE_URL`
are read, and their path segments pass the same identifier checks as typed
commands, so a pasted link can never send the bot's credentials elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

from bot.errors import InvalidIdentifierError
from bot.identifiers import validate_assistant, validate_build

# Slack sends at most a few links per message; more than this are not previewed.
MAX_LINKS = 5
DEFAULT_PORTS = {"http": 80, "https": 443}
PATH = re.compile(r"/v1/Assistants/(?P<assistant>[^/]+)(?:/ModelBuilds(?:/(?P<build>[^/]+))?)?/?")


@dataclass(frozen=True, slots=True)
class BuildLink:
    """The target of a pasted URL: an assistant, and possibly one of its builds."""

    url: str
    assistant: str
    build: str | None = None


def parse_link(url: str, base_url: str) -> BuildLink | None:
    """Return what `url` points at, or None when it is not an assistant or build URL of `base_url`."""
    parts = urlsplit(url)
    base = urlsplit(base_url)
    if _origin(parts.scheme, parts.hostname, _port(parts)) != _origin(base.scheme, base.hostname, _port(base)):
        return None

    prefix = base.path.rstrip("/")
    if not parts.path.startswith(prefix + "/v1/"):
        return None
    match = PATH.fullmatch(parts.path[len(prefix) :])
    if match is None:
        return None

    try:
        assistant = validate_assistant(unquote(match["assistant"]))
        build = validate_build(unquote(match["build"])) if match["build"] else None
    except InvalidIdentifierError:
        return None
    return BuildLink(url, assistant, build)


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None


def _origin(scheme: str, host: str | None, port: int | None) -> tuple[str, str, int | None]:
    return scheme.lower(), (host or "").lower(), port
