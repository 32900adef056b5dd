"""Wiring of the Bolt app: settings, Slack client, authorization and listeners."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.actions import register_alert_actions, register_view_actions
from bot.alerts.service import AlertCommands
from bot.core import BuildsCore
from bot.events import register_events
from bot.home import HomeTab
from bot.dedupe import RetryDeduplicator
from bot.delivery import ReplyDelivery
from bot.listeners import register_command
from bot.tasks import BackgroundTasks
from bot.views import ButtonCodec

logger = logging.getLogger(__name__)


class BotIdentity:
    """The bot's own identity from `auth.test`, fetched once and reused for every request.

    Bolt would otherwise call `auth.test` on the first request, which is network
    I/O before the acknowledgement.
    """

    def __init__(self, client: AsyncWebClient, token: str) -> None:
        self._client = client
        self._token = token
        self._result: AuthorizeResult | None = None

    async def load(self) -> AuthorizeResult:
        """Call `auth.test` unless it already succeeded, and return the result."""
        if self._result is None:
            response = await self._client.auth_test(token=self._token)
            self._result = AuthorizeResult.from_auth_test_response(auth_test_response=response, bot_token=self._token)
            logger.info("slack.authorized", extra={"team_id": response.get("team_id"), "bot_user_id": response.get("user_id")})
        return self._result

    def as_authorize(self) -> Callable[[], Awaitable[AuthorizeResult]]:
        """Return a Bolt `authorize` function that returns the cached identity.

        Bolt passes a function only the arguments its signature names, so the
        returned function takes none.
        """

        async def authorize() -> AuthorizeResult:
            return await self.load()

        return authorize


class _DropTokenWarning(logging.Filter):
    """Drop Bolt's warning that SLACK_BOT_TOKEN goes unused: the token reaches Bolt through `authorize`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def _bolt_logger() -> logging.Logger:
    bolt_logger = logging.getLogger("slack_bolt.app")
    if not any(isinstance(existing, _DropTokenWarning) for existing in bolt_logger.filters):
        bolt_logger.addFilter(_DropTokenWarning())
    return bolt_logger


def create_slack_client(settings: Settings, *, retry_handlers: list[AsyncRetryHandler]) -> AsyncWebClient:
    """Return the Slack Web API client for `settings.slack_api_url`, retrying with `retry_handlers`.

    It carries no token: Bolt gives each request a client with the token from
    `BotIdentity`, and Bolt rejects a token given both ways.
    """
    return AsyncWebClient(base_url=settings.slack_api_url, retry_handlers=retry_handlers)


def create_app(
    settings: Settings,
    *,
    core: BuildsCore,
    tasks: BackgroundTasks,
    identity: BotIdentity,
    client: AsyncWebClient,
    delivery: ReplyDelivery,
    alerts: AlertCommands,
    codec: ButtonCodec,
    home: HomeTab,
    token: str,
    socket_mode: bool = False,
) -> AsyncApp:
    """Return a Bolt app with the slash command registered, running listeners before it responds to Slack."""
    signing_secret = settings.slack_signing_secret.reveal() if settings.slack_signing_secret else None
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        authorize=identity.as_authorize(),
        process_before_response=True,
        request_verification_enabled=not socket_mode,
        logger=_bolt_logger(),
    )
    app.use(RetryDeduplicator())
    register_command(app, command=settings.command, core=core, tasks=tasks, delivery=delivery)
    register_alert_actions(app, core=core, alerts=alerts, tasks=tasks, delivery=delivery)
    register_view_actions(app, core=core, tasks=tasks, delivery=delivery, codec=codec)
    register_events(app, core=core, home=home, tasks=tasks, client=client, token=token, base_url=settings.autopilot_base_url)
    return app
