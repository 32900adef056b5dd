"""Tests for loading and validating settings from an environment mapping."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import pytest

from bot.config import (
    DEFAULT_AUTOPILOT_BASE_URL,
    DEFAULT_CACHE_TTL,
    DEFAULT_COMMAND,
    DEFAULT_LOG_LEVEL,
    DEFAULT_PORT,
    DEFAULT_SLACK_API_URL,
    Secret,
    Settings,
    load_settings,
    reveal_required,
)
from bot.errors import ConfigError

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
API_KEY = "SK" + "fedcba9876543210" * 2
ASSISTANT_SID = "UA" + "0123456789abcdef" * 2

# Distinctive values, so a leak shows up as an exact substring.
AUTH_TOKEN = "authtoken-7f3e9c1d-leak-marker"
API_SECRET = "apisecret-5b8e2a44-leak-marker"
BOT_TOKEN = "xoxb-bottoken-91c4e0-leak-marker"
APP_TOKEN = "xapp-apptoken-3d7a6f-leak-marker"
SIGNING_SECRET = "signing-secret-c2f19b-leak-marker"
URL_PASSWORD = "urlpassword-8c1f2e-leak-marker"
ALL_SECRETS = (AUTH_TOKEN, API_SECRET, BOT_TOKEN, APP_TOKEN, SIGNING_SECRET)

MINIMAL_ENV = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}


def _load(**overrides: str) -> Settings:
    return load_settings({**MINIMAL_ENV, **overrides})


def _full_env() -> dict[str, str]:
    return {
        **MINIMAL_ENV,
        "TWILIO_API_KEY": API_KEY,
        "TWILIO_API_SECRET": API_SECRET,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    }


# --- defaults -------------------------------------------------------------------------------------


def test_load_settings_minimal_env_defaults() -> None:
    """Only an account SID and an auth token are required, and every other setting has a default."""
    settings = _load()

    assert settings.account_sid == ACCOUNT_SID
    assert settings.auth_token == Secret(AUTH_TOKEN)
    assert settings.api_key is None
    assert settings.api_secret is None
    assert settings.autopilot_base_url == "https://autopilot.twilio.com"
    assert settings.autopilot_base_url == DEFAULT_AUTOPILOT_BASE_URL
    assert settings.slack_bot_token is None
    assert settings.slack_signing_secret is None
    assert settings.slack_app_token is None
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.slack_api_url == DEFAULT_SLACK_API_URL
    assert settings.port == 3000
    assert settings.port == DEFAULT_PORT
    assert settings.command == "/builds"
    assert settings.command == DEFAULT_COMMAND
    assert settings.assistants == ()
    assert settings.cache_ttl == 30.0
    assert settings.cache_ttl == DEFAULT_CACHE_TTL
    assert settings.log_level == "INFO"
    assert settings.log_level == DEFAULT_LOG_LEVEL


def test_load_settings_every_variable_read() -> None:
    settings = load_settings(
        {
            **_full_env(),
            "AUTOPILOT_BASE_URL": "https://autopilot.example.com/",
            "SLACK_API_URL": "https://slack.example.com/api",
            "PORT": "8080",
            "BUILDS_COMMAND": "/deploys",
            "BUILDS_ASSISTANTS": "support-bot,sales",
            "BUILDS_CACHE_TTL": "12.5",
            "BUILDS_LOG_LEVEL": "debug",
        }
    )

    assert settings.api_key == API_KEY
    assert settings.api_secret == Secret(API_SECRET)
    assert settings.slack_bot_token == Secret(BOT_TOKEN)
    assert settings.slack_app_token == Secret(APP_TOKEN)
    assert settings.slack_signing_secret == Secret(SIGNING_SECRET)
    assert settings.autopilot_base_url == "https://autopilot.example.com"
    assert settings.slack_api_url == "https://slack.example.com/api/"
    assert settings.port == 8080
    assert settings.command == "/deploys"
    assert settings.assistants == ("support-bot", "sales")
    assert settings.cache_ttl == 12.5
    assert settings.log_level == "DEBUG"


def test_load_settings_blank_values_use_defaults() -> None:
    """A variable set to whitespace counts as unset, and values are stripped."""
    settings = _load(TWILIO_ACCOUNT_SID=f"  {ACCOUNT_SID}\n", PORT="   ", BUILDS_COMMAND="", SLACK_BOT_TOKEN=" ")

    assert settings.account_sid == ACCOUNT_SID
    assert settings.port == DEFAULT_PORT
    assert settings.command == DEFAULT_COMMAND
    assert settings.slack_bot_token is None


# --- Twilio credentials ---------------------------------------------------------------------------


def test_load_settings_account_sid_missing() -> None:
    with pytest.raises(ConfigError, match=r"^TWILIO_ACCOUNT_SID: missing") as caught:
        load_settings({"TWILIO_AUTH_TOKEN": AUTH_TOKEN})

    assert caught.value.variable == "TWILIO_ACCOUNT_SID"


@pytest.mark.parametrize(
    "value",
    [
        "AC123",
        "AC" + "0" * 31,
        "AC" + "0" * 33,
        "SK" + "0" * 32,
        "AC" + "g" * 32,
        "ac" + "0" * 32,
    ],
    ids=["short", "31-digits", "33-digits", "api-key-sid", "not-hex", "lowercase-prefix"],
)
def test_load_settings_account_sid_malformed(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^TWILIO_ACCOUNT_SID: malformed.*AC followed by 32 hex digits"):
        _load(TWILIO_ACCOUNT_SID=value)


def test_load_settings_no_credentials_rejected() -> None:
    with pytest.raises(ConfigError, match=r"^TWILIO_AUTH_TOKEN: missing.*TWILIO_API_KEY and TWILIO_API_SECRET"):
        load_settings({"TWILIO_ACCOUNT_SID": ACCOUNT_SID})


def test_load_settings_api_key_without_secret() -> None:
    with pytest.raises(ConfigError, match=r"^TWILIO_API_SECRET: missing while TWILIO_API_KEY is set"):
        load_settings({"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_API_KEY": API_KEY})


def test_load_settings_api_secret_without_key() -> None:
    with pytest.raises(ConfigError, match=r"^TWILIO_API_KEY: missing while TWILIO_API_SECRET is set"):
        load_settings({"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_API_SECRET": API_SECRET})


def test_load_settings_api_secret_without_key_despite_token() -> None:
    """A lone API secret is an error even when an auth token would work on its own."""
    with pytest.raises(ConfigError, match=r"^TWILIO_API_KEY: missing"):
        _load(TWILIO_API_SECRET=API_SECRET)


def test_load_settings_api_key_malformed() -> None:
    with pytest.raises(ConfigError, match=r"^TWILIO_API_KEY: malformed value 'SK123'.*SK followed by 32 hex digits"):
        _load(TWILIO_API_KEY="SK123", TWILIO_API_SECRET=API_SECRET)


def test_twilio_credentials_auth_token() -> None:
    settings = _load()

    assert settings.twilio_credentials() == (ACCOUNT_SID, AUTH_TOKEN)


def test_twilio_credentials_api_key_only() -> None:
    settings = load_settings({"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_API_KEY": API_KEY, "TWILIO_API_SECRET": API_SECRET})

    assert settings.auth_token is None
    assert settings.twilio_credentials() == (API_KEY, API_SECRET)


def test_twilio_credentials_key_wins_over_token() -> None:
    """With both an auth token and an API key set, the key is used; the CLI logs the conflict."""
    settings = _load(TWILIO_API_KEY=API_KEY, TWILIO_API_SECRET=API_SECRET)

    assert settings.twilio_credentials() == (API_KEY, API_SECRET)
    assert settings.auth_token is not None


def test_twilio_credentials_none_set() -> None:
    """A `Settings` built by hand without credentials raises when they are needed."""
    settings = Settings(account_sid=ACCOUNT_SID)

    with pytest.raises(ConfigError, match=r"^TWILIO_AUTH_TOKEN: missing"):
        settings.twilio_credentials()


# --- URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["AUTOPILOT_BASE_URL", "SLACK_API_URL"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ftp://autopilot.example.com", r"invalid URL 'ftp://autopilot\.example\.com': expected an absolute http:// or https:// URL"),
        ("autopilot.example.com", r"invalid URL 'autopilot\.example\.com': expected an absolute"),
        ("https://", r"invalid URL 'https://': expected an absolute"),
        ("https://autopilot.example.com/v1?PageSize=50", r"remove the query and fragment"),
        ("https://autopilot.example.com/#top", r"remove the query and fragment"),
        ("https://builds@autopilot.example.com", r"remove the user name and password"),
        (f"https://builds:{URL_PASSWORD}@autopilot.example.com", r"remove the user name and password"),
        ("http://autopilot.example.com", r"would send credentials unencrypted: use https://"),
        ("http://192.0.2.10:8080", r"would send credentials unencrypted: use https://"),
        ("http://127.0.0.1.example.com", r"would send credentials unencrypted: use https://"),
        ("https://autopilot.example.com:99999", r"invalid port in 'https://autopilot\.example\.com:99999'"),
        ("https://autopilot.example.com:http", r"invalid port in"),
    ],
    ids=[
        "ftp-scheme",
        "no-scheme",
        "no-host",
        "query",
        "fragment",
        "user-name",
        "user-and-password",
        "http-public-host",
        "http-private-address",
        "http-loopback-lookalike",
        "port-out-of-range",
        "port-not-a-number",
    ],
)
def test_load_settings_base_url_rejected(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{variable}: .*{message}") as caught:
        _load(**{variable: value})

    assert caught.value.variable == variable


def test_load_settings_url_password_not_echoed() -> None:
    with pytest.raises(ConfigError, match=r"^AUTOPILOT_BASE_URL: ") as caught:
        _load(AUTOPILOT_BASE_URL=f"https://builds:{URL_PASSWORD}@autopilot.example.com")

    assert URL_PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://localhost:5000", "http://localhost:5000"),
        ("http://[::1]:9000", "http://[::1]:9000"),
        ("https://autopilot.example.com/", "https://autopilot.example.com"),
        ("https://autopilot.example.com:8443/prefix", "https://autopilot.example.com:8443/prefix"),
    ],
)
def test_load_settings_base_url_accepted(value: str, expected: str) -> None:
    """http:// is accepted only for loopback hosts and https:// for any host. Trailing slashes are dropped."""
    assert _load(AUTOPILOT_BASE_URL=value).autopilot_base_url == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://slack.example.com/api", "https://slack.example.com/api/"),
        ("https://slack.example.com/api/", "https://slack.example.com/api/"),
        ("https://slack.example.com/api///", "https://slack.example.com/api/"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000/"),
    ],
)
def test_load_settings_slack_api_url_trailing_slash(value: str, expected: str) -> None:
    """slack-sdk joins method names onto the base URL, so it must end with exactly one '/'."""
    assert _load(SLACK_API_URL=value).slack_api_url == expected


# --- Slack tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "prefix"),
    [
        ("SLACK_BOT_TOKEN", "xoxp-usertoken-0c8d1e-leak-marker", "xoxb-"),
        ("SLACK_BOT_TOKEN", APP_TOKEN, "xoxb-"),
        ("SLACK_APP_TOKEN", BOT_TOKEN, "xapp-"),
        ("SLACK_APP_TOKEN", "apptoken-without-prefix-leak-marker", "xapp-"),
    ],
    ids=["bot-user-token", "bot-app-token", "app-bot-token", "app-no-prefix"],
)
def test_load_settings_token_prefix_checked(variable: str, value: str, prefix: str) -> None:
    """A token of the wrong kind is rejected without echoing the token."""
    with pytest.raises(ConfigError, match=rf"^{variable}: malformed: .*starts with '{prefix}'") as caught:
        _load(**{variable: value})

    assert value not in str(caught.value)


def test_require_slack_http_mode_complete() -> None:
    settings = _load(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET)

    assert settings.require_slack(socket_mode=False) is None


def test_require_slack_socket_mode_complete() -> None:
    settings = _load(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN)

    assert settings.require_slack(socket_mode=True) is None


@pytest.mark.parametrize("socket_mode", [True, False], ids=["socket-mode", "http-mode"])
def test_require_slack_bot_token_missing(socket_mode: bool) -> None:
    settings = _load(SLACK_APP_TOKEN=APP_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET)

    with pytest.raises(ConfigError, match=r"^SLACK_BOT_TOKEN: missing.*xoxb-"):
        settings.require_slack(socket_mode=socket_mode)


def test_require_slack_socket_mode_app_token_missing() -> None:
    """Socket Mode needs the app-level token, and the signing secret does not replace it."""
    settings = _load(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET)

    with pytest.raises(ConfigError, match=r"^SLACK_APP_TOKEN: missing.*connections:write"):
        settings.require_slack(socket_mode=True)


def test_require_slack_http_mode_signing_secret_missing() -> None:
    """HTTP mode verifies request signatures, so the app-level token does not replace the signing secret."""
    settings = _load(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN)

    with pytest.raises(ConfigError, match=r"^SLACK_SIGNING_SECRET: missing"):
        settings.require_slack(socket_mode=False)


# --- server and command ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("8080", 8080), ("65535", 65_535), ("03000", 3000)])
def test_load_settings_port_accepted(value: str, expected: int) -> None:
    assert _load(PORT=value).port == expected


@pytest.mark.parametrize("value", ["0", "65536", "-1", "80a", "8080.0", "0x50", "²", "３０００"])
def test_load_settings_port_rejected(value: str) -> None:
    """Ports outside 1-65535 and anything but ASCII digits raise `ConfigError`, never `ValueError`."""
    with pytest.raises(ConfigError, match=rf"^PORT: invalid value {re.escape(repr(value))}: use a whole number from 1 to 65535"):
        _load(PORT=value)


@pytest.mark.parametrize("value", ["/builds", "/deploys", "/model-builds", "/ap_builds2", "/" + "a" * 31])
def test_load_settings_command_accepted(value: str) -> None:
    assert _load(BUILDS_COMMAND=value).command == value


@pytest.mark.parametrize(
    "value",
    ["builds", "/", "/Builds", "/-builds", "/model builds", "/builds!", "/" + "a" * 32],
    ids=["no-slash", "slash-only", "uppercase", "leading-dash", "space", "punctuation", "33-characters"],
)
def test_load_settings_command_rejected(value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^BUILDS_COMMAND: invalid value {re.escape(repr(value))}: a Slack command is '/'"):
        _load(BUILDS_COMMAND=value)


# --- assistants in scope --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("support-bot", ("support-bot",)),
        ("support-bot,sales", ("support-bot", "sales")),
        (" support-bot , sales ,", ("support-bot", "sales")),
        ("support-bot,,sales,support-bot", ("support-bot", "sales")),
        (f"{ASSISTANT_SID},support-bot", (ASSISTANT_SID, "support-bot")),
        (",,", ()),
    ],
    ids=["one", "two", "spaces-and-trailing-comma", "duplicates-and-empty", "sid-and-name", "only-commas"],
)
def test_load_settings_assistants_parsed(value: str, expected: tuple[str, ...]) -> None:
    """The list keeps the first occurrence of each name, in order."""
    assert _load(BUILDS_ASSISTANTS=value).assistants == expected


@pytest.mark.parametrize("entry", ["../x", "a/b", "sales?x=1", ".hidden", "a" * 65])
def test_load_settings_assistants_bad_entry(entry: str) -> None:
    with pytest.raises(ConfigError, match=r"^BUILDS_ASSISTANTS: .*is not a valid assistant SID or unique name.*Separate several assistants with commas"):
        _load(BUILDS_ASSISTANTS=f"support-bot,{entry}")


def test_load_settings_assistants_bad_entry_named() -> None:
    with pytest.raises(ConfigError, match=r"'\.\./x' is not a valid assistant"):
        _load(BUILDS_ASSISTANTS="support-bot,../x")


# --- cache and logging ----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("45", 45.0), ("2.5", 2.5), ("86400", 86_400.0)])
def test_load_settings_cache_ttl_accepted(value: str, expected: float) -> None:
    assert _load(BUILDS_CACHE_TTL=value).cache_ttl == expected


@pytest.mark.parametrize("value", ["nan", "NaN", "-1", "-0.5", "inf", "-inf", "86401", "thirty", "30s", "1e3", "1_0"])
def test_load_settings_cache_ttl_rejected(value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^BUILDS_CACHE_TTL: invalid value {re.escape(repr(value))}: use a number of seconds from 0 to 86400"):
        _load(BUILDS_CACHE_TTL=value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("DEBUG", "DEBUG"), ("info", "INFO"), ("Warning", "WARNING"), ("error", "ERROR")],
)
def test_load_settings_log_level_accepted(value: str, expected: str) -> None:
    assert _load(BUILDS_LOG_LEVEL=value).log_level == expected


@pytest.mark.parametrize("value", ["verbose", "warn", "CRITICAL", "10"])
def test_load_settings_log_level_rejected(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^BUILDS_LOG_LEVEL: invalid value .*use one of DEBUG, INFO, WARNING, ERROR"):
        _load(BUILDS_LOG_LEVEL=value)


# --- secrets stay masked --------------------------------------------------------------------------


def test_settings_repr_masks_secrets() -> None:
    settings = load_settings(_full_env())
    text = repr(settings)

    assert settings.auth_token is not None
    assert settings.auth_token.reveal() == AUTH_TOKEN
    for secret in ALL_SECRETS:
        assert secret not in text, secret
    assert ACCOUNT_SID in text


def test_settings_str_masks_secrets() -> None:
    text = f"{load_settings(_full_env())}"

    for secret in ALL_SECRETS:
        assert secret not in text, secret


@pytest.mark.parametrize("render", [str, repr, "{}".format, "{!r}".format], ids=["str", "repr", "format", "format-repr"])
def test_secret_text_masked(render: Callable[[object], str]) -> None:
    secret = Secret(AUTH_TOKEN)

    assert AUTH_TOKEN not in render(secret)
    assert "****" in render(secret)


def test_secret_reveal_returns_value() -> None:
    assert Secret(AUTH_TOKEN).reveal() == AUTH_TOKEN


def test_secret_equality_by_value() -> None:
    assert Secret(AUTH_TOKEN) == Secret(AUTH_TOKEN)
    assert Secret(AUTH_TOKEN) != Secret(API_SECRET)
    assert Secret(AUTH_TOKEN) != AUTH_TOKEN


def test_reveal_required_present() -> None:
    assert reveal_required(Secret(BOT_TOKEN), "SLACK_BOT_TOKEN") == BOT_TOKEN


def test_reveal_required_missing() -> None:
    with pytest.raises(ConfigError, match=r"^SLACK_SIGNING_SECRET: missing\. Set it in the environment\.") as caught:
        reveal_required(None, "SLACK_SIGNING_SECRET")

    assert caught.value.variable == "SLACK_SIGNING_SECRET"
