"""`builds-bot check`: validate the configuration and reach Slack and the Autopilot API once each."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.autopilot import AutopilotClient
from bot.config import Settings, load_settings
from bot.delivery import slack_error_code
from bot.errors import AutopilotError, ConfigError
from bot.render import explain
from bot.retry import RetryPolicy
from bot.state.sqlite import SqliteStateStore, store_from_url

logger = logging.getLogger(__name__)

REDIS_TIMEOUT = 3.0
SLACK_FIXES = {
    "invalid_auth": "the token is mistyped or revoked: copy the Bot User OAuth Token (xoxb-…) again from OAuth & Permissions",
    "not_authed": "no token reached Slack: set SLACK_BOT_TOKEN",
    "account_inactive": "the app was uninstalled or the workspace is inactive: reinstall the app and copy the new token",
    "token_revoked": "the token was revoked: reinstall the app and copy the new token",
    "not_allowed_token_type": "SLACK_APP_TOKEN must be an app-level token (xapp-…) with connections:write",
}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check: its name, whether it passed, and what to do if not."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        """Return the result as one line for a terminal."""
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


async def run_checks(environ: Mapping[str, str]) -> list[CheckResult]:
    """Run every check and return their results; a bad configuration skips the network checks."""
    try:
        settings = load_settings(environ)
    except ConfigError as error:
        return [
            CheckResult("configuration", False, str(error)),
            CheckResult("slack", False, "skipped until the configuration is valid"),
            CheckResult("autopilot", False, "skipped until the configuration is valid"),
        ]

    problem = _serve_problem(settings)
    if problem is not None:
        return [CheckResult("configuration", False, problem), *[CheckResult(name, False, "skipped until the configuration is valid") for name in ("slack", "autopilot")]]

    results = [CheckResult("configuration", True, "every variable is valid")]
    results.append(await check_slack(settings))
    for name, url in (("state store", settings.state_url), ("shared cache", settings.cache_url)):
        if url is not None and url.startswith(("redis://", "rediss://")):
            results.append(await check_redis(name, url))
    if settings.slack_app_token is not None:
        results.append(await check_socket_mode(settings))
    results.append(await check_autopilot(settings))
    return results


def check_state_url(url: str) -> None:
    """Raise `ConfigError` unless `url` names a supported store whose folder exists."""
    store = store_from_url(url)
    if isinstance(store, SqliteStateStore) and str(store.path) != ":memory:" and not store.path.parent.is_dir():
        raise ConfigError("BUILDS_STATE_URL", f"the folder {str(store.path.parent)!r} does not exist: create it or change the URL.")


def _serve_problem(settings: Settings) -> str | None:
    """Return what `serve` would reject in `settings` beyond the variables' own format, or None."""
    try:
        settings.require_slack(socket_mode=settings.slack_app_token is not None)
        check_state_url(settings.state_url)
    except ConfigError as error:
        return str(error)
    return None


async def check_redis(name: str, url: str) -> CheckResult:
    """PING the Redis server that `url` names, once, with a short timeout."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    from bot.state.redis import redact_url

    client = Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
    try:
        await client.ping()
    except (RedisError, OSError) as error:
        return CheckResult(name, False, f"{redact_url(url)} does not respond ({type(error).__name__}): start Redis or fix the URL")
    finally:
        await client.aclose()
    return CheckResult(name, True, f"{redact_url(url)} responds to PING")


async def check_slack(settings: Settings) -> CheckResult:
    """Call `auth.test` with the bot token."""
    if settings.slack_bot_token is None:
        return CheckResult("slack", False, "SLACK_BOT_TOKEN is missing: set it to the app's bot token (xoxb-…)")

    client = AsyncWebClient(base_url=settings.slack_api_url, timeout=10)
    try:
        response = await client.auth_test(token=settings.slack_bot_token.reveal())
    except SlackApiError as error:
        return CheckResult("slack", False, _slack_failure(error))
    except (ClientError, TimeoutError) as error:
        return CheckResult("slack", False, f"could not reach {settings.slack_api_url} ({type(error).__name__}): check SLACK_API_URL and the network")

    return CheckResult("slack", True, f"auth.test passed for team {response.get('team_id')} as bot user {response.get('user_id')}")


async def check_socket_mode(settings: Settings) -> CheckResult:
    """Ask Slack for a Socket Mode URL with the app-level token, which proves the token works."""
    assert settings.slack_app_token is not None
    client = AsyncWebClient(base_url=settings.slack_api_url, timeout=10)
    try:
        await client.apps_connections_open(app_token=settings.slack_app_token.reveal())
    except SlackApiError as error:
        return CheckResult("socket mode", False, _slack_failure(error, method="apps.connections.open"))
    except (ClientError, TimeoutError) as error:
        return CheckResult("socket mode", False, f"could not reach {settings.slack_api_url} ({type(error).__name__})")
    return CheckResult("socket mode", True, "apps.connections.open accepted SLACK_APP_TOKEN")


async def check_autopilot(settings: Settings) -> CheckResult:
    """List one assistant with the configured credentials, in a single request."""
    retry = RetryPolicy(attempts=1, deadline=settings.lookup_timeout)
    try:
        async with AutopilotClient(settings, page_size=1, max_pages=1, retry=retry) as client:
            listing = await client.list_assistants()
    except AutopilotError as error:
        logger.warning("check.autopilot_failed", extra={"error": str(error)})
        return CheckResult("autopilot", False, f"{settings.autopilot_base_url}: {explain(error)}")

    found = "at least one assistant" if listing.items else "no assistants yet"
    return CheckResult("autopilot", True, f"{settings.autopilot_base_url} accepted the credentials and lists {found}")


def _slack_failure(error: SlackApiError, *, method: str = "auth.test") -> str:
    code = slack_error_code(error)
    fix = SLACK_FIXES.get(code, f"see https://api.slack.com/methods/{method} for what this error means")
    return f"Slack returned {code}: {fix}"
