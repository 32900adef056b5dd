"""The running bot: HTTP mode on aiohttp.web, or Socket Mode, with graceful shutdown.

`BotRuntime` owns every long-lived resource: the Autopilot client, the Bolt
app, the listening socket or Socket Mode connection, and the background
tasks. It starts them in order and stops them in reverse. First it accepts no
new requests, then in-flight replies finish, then the clients close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from aiohttp import ClientError, ClientSession, ClientTimeout, web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.app import BotIdentity, create_app, create_slack_client
from bot.autopilot import AutopilotClient
from bot.config import Settings, reveal_required
from bot.alerts.callbacks import CALLBACK_PATH
from bot.alerts.runtime import AlertRuntime
from bot.core import BuildsCore, Clock, utc_now
from bot.delivery import ReplyDelivery, ResponseUrls, slack_error_code
from bot.errors import ConfigError, StateUnavailableError
from bot.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bot.metrics import Metrics
from bot.shared_cache import SharedCache
from bot.home import HomeTab
from bot.retry import RetryPolicy, Sleep
from bot.slack_retry import build_retry_handlers
from bot.tasks import BackgroundTasks
from bot.views import ButtonCodec, codec_key

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
READY_CHECK_TIMEOUT = 2.0
# Slack's response_url accepts replies for 30 minutes; shutdown waits far less.
DRAIN_TIMEOUT = 25.0
HTTP_SHUTDOWN_TIMEOUT = 10.0
SOCKET_PING_INTERVAL = 10.0
# slack-sdk's own timeout for a webhook post, kept for the shared session.
RESPONSE_URL_TIMEOUT = 30.0


def create_web_app(
    bolt: AsyncApp | None,
    *,
    readiness: Callable[[], Awaitable[dict[str, str]]],
    metrics: Metrics,
    twilio_callback: Handler | None = None,
) -> web.Application:
    """Return the aiohttp application: Slack requests (HTTP mode), health, readiness, metrics and Twilio callbacks.

    `readiness` returns a problem per failing dependency; an empty result means ready.
    """

    async def slack_events(request: web.Request) -> web.Response:
        assert bolt is not None
        bolt_response = await bolt.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(_: web.Request) -> web.Response:
        problems = await readiness()
        if problems:
            return web.json_response({"status": "unavailable", "problems": problems}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    web_app = web.Application()
    if bolt is not None:
        web_app.router.add_post(EVENTS_PATH, slack_events)
    web_app.router.add_get(HEALTH_PATH, health)
    web_app.router.add_get(READY_PATH, ready)
    web_app.router.add_get(METRICS_PATH, metrics_page)
    if twilio_callback is not None:
        web_app.router.add_post(CALLBACK_PATH, twilio_callback)
    return web_app


class BotRuntime:
    """Start and stop the bot in HTTP mode or Socket Mode."""

    def __init__(
        self,
        settings: Settings,
        *,
        socket_mode: bool,
        host: str = "0.0.0.0",
        port: int | None = None,
        retry_sleep: Sleep = asyncio.sleep,
        socket_ping_interval: float = SOCKET_PING_INTERVAL,
        clock: Clock = utc_now,
        run_alert_loops: bool = True,
    ) -> None:
        settings.require_slack(socket_mode=socket_mode)
        self._settings = settings
        self._socket_mode = socket_mode
        self._host = host
        self._port = settings.port if port is None else port
        self._retry_sleep = retry_sleep
        self._socket_ping_interval = socket_ping_interval
        self._clock = clock
        self._run_alert_loops = run_alert_loops
        self.alerts: AlertRuntime | None = None
        self.metrics = Metrics()
        self._socket_handler: AsyncSocketModeHandler | None = None
        self._stack = AsyncExitStack()
        self.tasks = BackgroundTasks()
        self.bound_port: int | None = None

    @property
    def mode(self) -> str:
        """Return `socket` or `http`."""
        return "socket" if self._socket_mode else "http"

    async def start(self) -> None:
        """Open the clients, build the app and start accepting requests."""
        retry = RetryPolicy(attempts=self._settings.retry_attempts, deadline=self._settings.lookup_timeout, sleep=self._retry_sleep)
        client = await self._stack.enter_async_context(AutopilotClient(self._settings, retry=retry, metrics=self.metrics))
        retry_handlers = build_retry_handlers(sleep=self._retry_sleep)
        slack_client = create_slack_client(self._settings, retry_handlers=retry_handlers)
        token = reveal_required(self._settings.slack_bot_token, "SLACK_BOT_TOKEN")
        identity = BotIdentity(slack_client, token)
        await _warm_identity(identity)

        alerts = AlertRuntime(
            self._settings,
            client=client,
            slack_client=slack_client,
            token=token,
            clock=self._clock,
            sleep=self._retry_sleep,
            metrics=self.metrics,
        )
        try:
            self.alerts = await self._stack.enter_async_context(alerts)
        except (FileNotFoundError, PermissionError) as error:
            raise ConfigError("BUILDS_STATE_URL", f"cannot open the state database ({error}). Create its folder or change the URL.") from error
        # The signing secret keys button values. Socket Mode may run without one, and then the bot token is the key.
        secret = self._settings.slack_signing_secret.reveal() if self._settings.slack_signing_secret else token
        codec = ButtonCodec(codec_key(secret))
        shared_cache = await self._open_shared_cache()
        core = BuildsCore(
            settings=self._settings,
            client=client,
            clock=self._clock,
            alerts=alerts.commands,
            codec=codec,
            metrics=self.metrics,
            shared_cache=shared_cache,
        )
        alerts.attach_digest(core.builds_in_scope)
        # One session for every response_url post, closed after the replies in flight have drained.
        session = await self._stack.enter_async_context(ClientSession(timeout=ClientTimeout(total=RESPONSE_URL_TIMEOUT)))
        delivery = ReplyDelivery(
            client=slack_client, token=token, response_urls=ResponseUrls(), retry_handlers=retry_handlers, session=session
        )
        bolt = create_app(
            self._settings,
            core=core,
            tasks=self.tasks,
            identity=identity,
            client=slack_client,
            delivery=delivery,
            alerts=alerts.commands,
            codec=codec,
            home=HomeTab(
                core=core, store=alerts.store, client=slack_client, token=token, clock=self._clock, available=alerts.opened.is_set
            ),
            token=token,
            socket_mode=self._socket_mode,
        )
        callback = alerts.callback_route()
        if self._socket_mode:
            await self._start_socket_mode(bolt)
            # Socket Mode needs no public endpoint, but health, readiness and metrics are still served.
            await self._start_http(create_web_app(None, readiness=self.readiness, metrics=self.metrics, twilio_callback=callback))
        else:
            await self._start_http(create_web_app(bolt, readiness=self.readiness, metrics=self.metrics, twilio_callback=callback))
        if self._run_alert_loops:
            alerts.start_loops()
        logger.info("server.started", extra={"mode": self.mode, "host": self._host, "port": self.bound_port})

    async def _open_shared_cache(self) -> SharedCache | None:
        if self._settings.cache_url is None:
            return None
        shared = SharedCache(self._settings.cache_url)
        # open() logs an unreachable Redis and carries on: lookups then fetch on their own.
        await shared.open()
        self._stack.push_async_callback(shared.close)
        return shared

    async def readiness(self) -> dict[str, str]:
        """Return a problem per dependency that is not ready: the state store, and the Slack connection in Socket Mode."""
        problems: dict[str, str] = {}
        if self.alerts is not None and not self.alerts.opened.is_set():
            problems["state_store"] = f"not opened yet, retrying: {self.alerts.leadership.store_error or 'no answer'}"
        elif self.alerts is not None:
            try:
                await asyncio.wait_for(self.alerts.store.ping(), READY_CHECK_TIMEOUT)
            except (StateUnavailableError, TimeoutError) as error:
                problems["state_store"] = str(error) or "no answer within 2 s"
        if self._socket_handler is not None and not await self._socket_handler.client.is_connected():
            problems["slack"] = "the Socket Mode connection is down; slack-sdk is reconnecting"
        return problems

    async def stop(self) -> None:
        """Stop accepting requests, let in-flight replies finish, then close every client."""
        logger.info("server.stopping", extra={"mode": self.mode, "running_tasks": len(self.tasks)})
        await self._stack.aclose()
        logger.info("server.stopped", extra={"mode": self.mode})

    async def _start_http(self, web_app: web.Application) -> None:
        runner = web.AppRunner(web_app, shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT, access_log=None)
        await runner.setup()
        # Registered before the site starts, so exit order is: stop listening, drain tasks, close clients.
        self._stack.push_async_callback(self.tasks.drain, DRAIN_TIMEOUT)
        self._stack.push_async_callback(runner.cleanup)

        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self.bound_port = runner.addresses[0][1]

    async def _start_socket_mode(self, bolt: AsyncApp) -> None:
        app_token = reveal_required(self._settings.slack_app_token, "SLACK_APP_TOKEN")
        await _check_app_token(bolt.client, app_token)
        # slack-sdk reconnects a dropped or stale connection on its own, checking every ping interval.
        handler = AsyncSocketModeHandler(bolt, app_token, ping_interval=self._socket_ping_interval)
        self._socket_handler = handler
        self._stack.push_async_callback(self.tasks.drain, DRAIN_TIMEOUT)
        self._stack.push_async_callback(handler.close_async)
        # Connecting may take several tries; health, readiness and alerts do not wait for it.
        connecting = asyncio.create_task(handler.connect_async(), name="slack.socket_connect")
        self._stack.push_async_callback(_cancel, connecting)


async def _warm_identity(identity: BotIdentity) -> None:
    try:
        await identity.load()
    except SlackApiError as error:
        raise ConfigError(
            "SLACK_BOT_TOKEN", f"Slack rejected the token ({error.response.get('error')}). Copy the bot token (xoxb-…) again from the app settings."
        ) from error
    except (ClientError, TimeoutError) as error:
        # The first request loads it instead; the bot still starts while Slack is unreachable.
        logger.warning("slack.auth_test_failed", extra={"error": repr(error)})


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _check_app_token(client: AsyncWebClient, app_token: str) -> None:
    try:
        await client.apps_connections_open(app_token=app_token)
    except SlackApiError as error:
        raise ConfigError(
            "SLACK_APP_TOKEN",
            f"Slack rejected the app-level token ({slack_error_code(error)}). "
            "Create one with the connections:write scope under Basic Information > App-Level Tokens.",
        ) from error
    except (ClientError, TimeoutError) as error:
        # slack-sdk keeps trying to connect; a stop signal still ends the wait.
        logger.warning("slack.connections_open_failed", extra={"error": repr(error)})


async def serve(settings: Settings, *, socket_mode: bool, host: str, port: int | None) -> None:
    """Run the bot until SIGTERM or SIGINT, then shut down gracefully, even while it is still starting."""
    runtime = BotRuntime(settings, socket_mode=socket_mode, host=host, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    starting = asyncio.create_task(runtime.start())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            logger.info("server.start_interrupted", extra={"mode": runtime.mode})
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return
        starting.result()
        await stopping
    finally:
        stopping.cancel()
        await runtime.stop()
