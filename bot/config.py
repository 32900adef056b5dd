"""Settings read once from the environment into a frozen, typed object.

`load_settings()` validates every variable it reads and raises `ConfigError`
naming the variable and the fix. Secrets are wrapped in `Secret`, whose `repr`
and `str` never show the value.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from bot.errors import ConfigError, InvalidIdentifierError
from bot.identifiers import validate_assistant

DEFAULT_AUTOPILOT_BASE_URL = "https://autopilot.twilio.com"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_PORT = 3000
DEFAULT_COMMAND = "/builds"
DEFAULT_CACHE_TTL = 30.0
DEFAULT_LOG_LEVEL = "INFO"
DEFAULT_RETRY_ATTEMPTS = 4
DEFAULT_LOOKUP_TIMEOUT = 30.0
DEFAULT_STALE_MAX = 3600.0
MAX_CACHE_TTL = 86_400.0
MAX_RETRY_ATTEMPTS = 10
DEFAULT_STATE_URL = "sqlite:///builds-bot.db"
DEFAULT_POLL_INTERVAL = 60.0
DEFAULT_CATCHUP_WINDOW = timedelta(hours=6)
# Twilio stops a model build after 60 minutes, so half of that is already unusual.
DEFAULT_STUCK_AFTER = timedelta(minutes=30)
DURATION = re.compile(r"(?P<amount>\d{1,6})(?P<unit>[smhd]?)")
DURATION_UNITS = {"": "seconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")
USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
DECIMAL = re.compile(r"\d+(\.\d+)?")
# Slack accepts replies through a response_url for 30 minutes, so no lookup may take longer.
MAX_LOOKUP_TIMEOUT = 1800.0

ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
API_KEY_SID = re.compile(r"SK[0-9a-fA-F]{32}")
# Slack command names are lowercase, at most 32 characters, without spaces.
SLASH_COMMAND = re.compile(r"/[a-z0-9][a-z0-9_\-]{0,30}")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class Secret:
    """A credential whose `repr` and `str` are masked; `reveal()` returns the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value, for the one place that sends it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def reveal_required(secret: Secret | None, variable: str) -> str:
    """Return the value of a secret that must be set, or raise `ConfigError` naming `variable`."""
    if secret is None:
        raise ConfigError(variable, "missing. Set it in the environment.")
    return secret.reveal()


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the bot reads from its environment, validated."""

    account_sid: str
    auth_token: Secret | None = None
    api_key: str | None = None
    api_secret: Secret | None = None
    autopilot_base_url: str = DEFAULT_AUTOPILOT_BASE_URL
    slack_bot_token: Secret | None = None
    slack_signing_secret: Secret | None = None
    slack_app_token: Secret | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    port: int = DEFAULT_PORT
    command: str = DEFAULT_COMMAND
    assistants: tuple[str, ...] = field(default_factory=tuple)
    cache_ttl: float = DEFAULT_CACHE_TTL
    stale_max: float = DEFAULT_STALE_MAX
    retry_attempts: int = DEFAULT_RETRY_ATTEMPTS
    lookup_timeout: float = DEFAULT_LOOKUP_TIMEOUT
    log_level: str = DEFAULT_LOG_LEVEL
    log_json: bool = False
    state_url: str = DEFAULT_STATE_URL
    poll_interval: float = DEFAULT_POLL_INTERVAL
    catchup_window: timedelta = DEFAULT_CATCHUP_WINDOW
    stuck_after: timedelta = DEFAULT_STUCK_AFTER
    alert_channel: str | None = None
    admins: frozenset[str] = frozenset()
    public_url: str | None = None
    cache_url: str | None = None

    def twilio_credentials(self) -> tuple[str, str]:
        """Return the Basic auth user name and password for the Autopilot API."""
        if self.api_key is not None and self.api_secret is not None:
            return self.api_key, self.api_secret.reveal()

        if self.auth_token is None:
            raise ConfigError("TWILIO_AUTH_TOKEN", "missing. Set it, or set TWILIO_API_KEY and TWILIO_API_SECRET.")
        return self.account_sid, self.auth_token.reveal()

    def require_slack(self, *, socket_mode: bool) -> None:
        """Raise `ConfigError` unless the Slack settings for the chosen mode are present."""
        if self.slack_bot_token is None:
            raise ConfigError("SLACK_BOT_TOKEN", "missing. Set it to the app's bot token (xoxb-…) from OAuth & Permissions.")

        if socket_mode and self.slack_app_token is None:
            raise ConfigError("SLACK_APP_TOKEN", "missing. Set it to an app-level token (xapp-…) with connections:write.")

        if not socket_mode and self.slack_signing_secret is None:
            raise ConfigError("SLACK_SIGNING_SECRET", "missing. Set it to the signing secret from the app's Basic Information page.")


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Read and validate every setting from `environ`, raising `ConfigError` on the first bad one."""
    env = {key: value.strip() for key, value in environ.items() if value.strip()}
    account_sid, auth_token, api_key, api_secret = _twilio_credentials(env)

    return Settings(
        account_sid=account_sid,
        auth_token=auth_token,
        api_key=api_key,
        api_secret=api_secret,
        autopilot_base_url=_base_url(env, "AUTOPILOT_BASE_URL", DEFAULT_AUTOPILOT_BASE_URL, carries_credentials=True),
        slack_bot_token=_token(env, "SLACK_BOT_TOKEN", "xoxb-"),
        slack_signing_secret=_secret(env, "SLACK_SIGNING_SECRET"),
        slack_app_token=_token(env, "SLACK_APP_TOKEN", "xapp-"),
        slack_api_url=_base_url(env, "SLACK_API_URL", DEFAULT_SLACK_API_URL, carries_credentials=True).rstrip("/") + "/",
        port=_port(env),
        command=_command(env),
        assistants=_assistants(env),
        cache_ttl=_seconds(env, "BUILDS_CACHE_TTL", DEFAULT_CACHE_TTL, minimum=0.0, maximum=MAX_CACHE_TTL),
        stale_max=_seconds(env, "BUILDS_STALE_MAX", DEFAULT_STALE_MAX, minimum=0.0, maximum=MAX_CACHE_TTL),
        retry_attempts=_retry_attempts(env),
        lookup_timeout=_seconds(env, "BUILDS_LOOKUP_TIMEOUT", DEFAULT_LOOKUP_TIMEOUT, minimum=1.0, maximum=MAX_LOOKUP_TIMEOUT),
        log_level=_log_level(env),
        log_json=_log_format(env),
        state_url=env.get("BUILDS_STATE_URL", DEFAULT_STATE_URL),
        poll_interval=_seconds(env, "BUILDS_POLL_INTERVAL", DEFAULT_POLL_INTERVAL, minimum=1.0, maximum=3600.0),
        catchup_window=_duration(env, "BUILDS_CATCHUP_WINDOW", DEFAULT_CATCHUP_WINDOW, maximum=timedelta(days=7)),
        stuck_after=_duration(env, "BUILDS_STUCK_AFTER", DEFAULT_STUCK_AFTER, maximum=timedelta(hours=24)),
        alert_channel=_slack_id(env, "BUILDS_ALERT_CHANNEL", CHANNEL_ID, "a channel ID such as C0123ABCD (channel details > About)"),
        admins=_admins(env),
        public_url=_public_url(env),
        cache_url=_cache_url(env),
    )


def _twilio_credentials(env: Mapping[str, str]) -> tuple[str, Secret | None, str | None, Secret | None]:
    account_sid = env.get("TWILIO_ACCOUNT_SID")
    if account_sid is None:
        raise ConfigError("TWILIO_ACCOUNT_SID", "missing. Set it to your Twilio account SID (AC followed by 32 hex digits).")
    if not ACCOUNT_SID.fullmatch(account_sid):
        raise ConfigError("TWILIO_ACCOUNT_SID", "malformed: expected AC followed by 32 hex digits. Copy it from the Twilio Console.")

    api_key, api_secret = _api_key(env)
    auth_token = _secret(env, "TWILIO_AUTH_TOKEN")
    if api_key is None and auth_token is None:
        raise ConfigError("TWILIO_AUTH_TOKEN", "missing. Set it, or set TWILIO_API_KEY and TWILIO_API_SECRET.")
    return account_sid, auth_token, api_key, api_secret


def _api_key(env: Mapping[str, str]) -> tuple[str | None, Secret | None]:
    api_key = env.get("TWILIO_API_KEY")
    api_secret = _secret(env, "TWILIO_API_SECRET")
    if api_key is None and api_secret is None:
        return None, None

    if api_key is None:
        raise ConfigError("TWILIO_API_KEY", "missing while TWILIO_API_SECRET is set. Set the API key SID (SK…) that the secret belongs to.")
    if not API_KEY_SID.fullmatch(api_key):
        raise ConfigError("TWILIO_API_KEY", f"malformed value {api_key!r}: expected SK followed by 32 hex digits.")
    if api_secret is None:
        raise ConfigError("TWILIO_API_SECRET", "missing while TWILIO_API_KEY is set. Set the secret shown when the key was created.")
    return api_key, api_secret


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    value = env.get(name)
    return None if value is None else Secret(value)


def _token(env: Mapping[str, str], name: str, prefix: str) -> Secret | None:
    value = env.get(name)
    if value is None:
        return None

    if not value.startswith(prefix):
        raise ConfigError(name, f"malformed: a Slack token of this kind starts with {prefix!r}. Copy it from the Slack app settings.")
    return Secret(value)


def _base_url(env: Mapping[str, str], name: str, default: str, *, carries_credentials: bool) -> str:
    value = env.get(name, default)
    parts = urlsplit(value)
    if parts.username or parts.password:
        # The value is not quoted back, since user info may hold a password.
        raise ConfigError(name, "invalid URL: remove the user name and password; credentials come from their own variables.")

    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, f"invalid URL {value!r}: expected an absolute http:// or https:// URL such as {default!r}.")

    if parts.query or parts.fragment:
        raise ConfigError(name, f"invalid URL {value!r}: remove the query and fragment.")

    if carries_credentials and parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(name, f"{value!r} would send credentials unencrypted: use https:// (http:// is accepted only for loopback hosts).")

    _check_port(name, value)
    return value.rstrip("/")


def _check_port(name: str, value: str) -> None:
    try:
        urlsplit(value).port
    except ValueError as error:
        raise ConfigError(name, f"invalid port in {value!r}: use a number from 1 to 65535.") from error


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _port(env: Mapping[str, str]) -> int:
    value = env.get("PORT", str(DEFAULT_PORT))
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 65_535:
        raise ConfigError("PORT", f"invalid value {value!r}: use a whole number from 1 to 65535.")
    return int(value)


def _command(env: Mapping[str, str]) -> str:
    value = env.get("BUILDS_COMMAND", DEFAULT_COMMAND)
    if not SLASH_COMMAND.fullmatch(value):
        raise ConfigError(
            "BUILDS_COMMAND",
            f"invalid value {value!r}: a Slack command is '/' followed by up to 31 lowercase letters, digits, '-' or '_'.",
        )
    return value


def _assistants(env: Mapping[str, str]) -> tuple[str, ...]:
    names: list[str] = []
    for item in env.get("BUILDS_ASSISTANTS", "").split(","):
        item = item.strip()
        if not item or item in names:
            continue
        try:
            names.append(validate_assistant(item))
        except InvalidIdentifierError as error:
            raise ConfigError("BUILDS_ASSISTANTS", f"{error} Separate several assistants with commas.") from error
    return tuple(names)


def _seconds(env: Mapping[str, str], name: str, default: float, *, minimum: float, maximum: float) -> float:
    value = env.get(name, f"{default:g}")
    try:
        # float() also reads "1_0" and "1e3"; only plain decimal numbers are meant.
        seconds = float(value) if DECIMAL.fullmatch(value) else math.nan
    except ValueError:
        seconds = math.nan

    if not minimum <= seconds <= maximum:
        raise ConfigError(name, f"invalid value {value!r}: use a number of seconds from {minimum:g} to {maximum:g}.")
    return seconds


def _retry_attempts(env: Mapping[str, str]) -> int:
    value = env.get("BUILDS_RETRY_ATTEMPTS", str(DEFAULT_RETRY_ATTEMPTS))
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_RETRY_ATTEMPTS:
        raise ConfigError(
            "BUILDS_RETRY_ATTEMPTS", f"invalid value {value!r}: use a whole number of attempts from 1 to {MAX_RETRY_ATTEMPTS}."
        )
    return int(value)


def _duration(env: Mapping[str, str], name: str, default: timedelta, *, maximum: timedelta) -> timedelta:
    value = env.get(name)
    if value is None:
        return default

    match = DURATION.fullmatch(value.lower())
    duration = timedelta(**{DURATION_UNITS[match["unit"]]: int(match["amount"])}) if match else None
    if duration is None or not timedelta(seconds=1) <= duration <= maximum:
        raise ConfigError(name, f"invalid value {value!r}: use seconds or a duration such as 30m, 6h or 1d, up to {_short(maximum)}.")
    return duration


def _short(duration: timedelta) -> str:
    if duration.days and not duration.seconds:
        return f"{duration.days}d"
    return f"{int(duration.total_seconds() // 3600)}h"


def _slack_id(env: Mapping[str, str], name: str, pattern: re.Pattern[str], expected: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    if not pattern.fullmatch(value):
        raise ConfigError(name, f"invalid value {value!r}: expected {expected}.")
    return value


def _admins(env: Mapping[str, str]) -> frozenset[str]:
    admins = set()
    for item in env.get("BUILDS_ADMINS", "").split(","):
        item = item.strip()
        if not item:
            continue
        if not USER_ID.fullmatch(item):
            raise ConfigError("BUILDS_ADMINS", f"invalid user ID {item!r}: list Slack user IDs such as U0123ABCD, separated by commas.")
        admins.add(item)
    return frozenset(admins)


def _public_url(env: Mapping[str, str]) -> str | None:
    if env.get("BUILDS_PUBLIC_URL") is None:
        return None
    # Twilio calls this URL; it carries no credential of the bot's, so http:// is the operator's choice.
    return _base_url(env, "BUILDS_PUBLIC_URL", "https://builds-bot.example.com", carries_credentials=False)


def log_level_from(environ: Mapping[str, str], default: str) -> str:
    """Return the validated BUILDS_LOG_LEVEL, or `default`, for commands that need no other setting."""
    value = environ.get("BUILDS_LOG_LEVEL", "").strip()
    return _log_level({"BUILDS_LOG_LEVEL": value or default})


def _cache_url(env: Mapping[str, str]) -> str | None:
    value = env.get("BUILDS_CACHE_URL")
    if value is None:
        return None

    # Imported here, so a bot without a shared cache never loads redis-py.
    from bot.state.redis import parse_redis_url

    try:
        parse_redis_url(value)
    except ValueError as error:
        raise ConfigError("BUILDS_CACHE_URL", str(error)) from error
    return value


def _log_format(env: Mapping[str, str]) -> bool:
    value = env.get("BUILDS_LOG_FORMAT", "text").lower()
    if value not in ("text", "json"):
        raise ConfigError("BUILDS_LOG_FORMAT", f"invalid value {value!r}: use text (key=value lines) or json (one JSON object per line).")
    return value == "json"


def _log_level(env: Mapping[str, str]) -> str:
    value = env.get("BUILDS_LOG_LEVEL", DEFAULT_LOG_LEVEL).upper()
    if value not in LOG_LEVELS:
        raise ConfigError("BUILDS_LOG_LEVEL", f"invalid value {value!r}: use one of {', '.join(LOG_LEVELS)}.")
    return value
