"""A lean Slack stand-in that timestamps replies, and slash commands signed as Slack signs them.

The stand-in runs in the load generator's process, so a reply's arrival time
and the command's send time come from one `time.perf_counter()` clock. Each
command gets its own response_url, and the first message posted to it
resolves that command's future.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from types import TracebackType
from urllib.parse import urlencode

from aiohttp import web

SIGNING_SECRET = "bench-signing-secret-0123456789ab"
BOT_TOKEN = "xoxb-0000000000-bench-bot-token"
TEAM_ID = "T0BENCH001"
BOT_USER_ID = "U0BOT00001"
COMMAND = "/builds"


class SlackStandIn:
    """Slack's `auth.test` and `chat.postEphemeral`, and one response_url per command, on 127.0.0.1."""

    def __init__(self) -> None:
        self.base_url = ""
        self.api_calls = 0
        self._runner: web.AppRunner | None = None
        self._ids = itertools.count()
        self._waiting: dict[str, asyncio.Future[float]] = {}

    async def __aenter__(self) -> SlackStandIn:
        app = web.Application()
        app.router.add_post("/api/{method}", self._web_api)
        app.router.add_post("/response/{key}", self._response_url)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        """Return the Web API base URL, the value for SLACK_API_URL."""
        return f"{self.base_url}/api/"

    def new_reply(self) -> tuple[str, asyncio.Future[float]]:
        """Return a fresh response_url and a future of the `perf_counter()` time its first message arrives."""
        key = str(next(self._ids))
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        return f"{self.base_url}/response/{key}", future

    def forget(self, url: str) -> None:
        """Stop waiting for a reply to `url`. A message that arrives later is still accepted, and ignored."""
        self._waiting.pop(url.rsplit("/", 1)[-1], None)

    async def _web_api(self, request: web.Request) -> web.Response:
        self.api_calls += 1
        await request.read()
        if request.match_info["method"] == "auth.test":
            return web.json_response(
                {"ok": True, "url": "https://bench.slack.com/", "team": "Bench", "user": "builds-bot",
                 "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": "B0BOT00001"}
            )
        return web.json_response({"ok": True})

    async def _response_url(self, request: web.Request) -> web.Response:
        arrived = time.perf_counter()
        body = await request.read()
        future = self._waiting.pop(request.match_info["key"], None)
        if future is not None and not future.done():
            if b'"blocks"' in body or b'"text"' in body:
                future.set_result(arrived)
            else:
                future.set_exception(ValueError(f"a reply without text or blocks: {body[:100]!r}"))
        return web.Response(text="ok")


def sign(body: str, *, timestamp: int, secret: str = SIGNING_SECRET) -> dict[str, str]:
    """Return Slack's request headers: the timestamp and 'v0=' + hex HMAC-SHA256 of 'v0:{ts}:{body}'."""
    base = f"v0:{timestamp}:{body}".encode()
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": signature,
    }


def signed_command(text: str, *, response_url: str, user_id: str = "U0ENGINEER", secret: str = SIGNING_SECRET) -> tuple[bytes, dict[str, str]]:
    """Return the body and headers of a `/builds` request with the form fields Slack sends."""
    form = {
        "token": "legacy-verification-token",
        "team_id": TEAM_ID,
        "team_domain": "bench",
        "channel_id": "C0INCIDENT",
        "channel_name": "incident",
        "user_id": user_id,
        "user_name": "oncall",
        "command": COMMAND,
        "text": text,
        "api_app_id": "A0BUILDS01",
        "is_enterprise_install": "false",
        "response_url": response_url,
        # Unique per command: the bot drops a repeated trigger_id as a Slack retry.
        "trigger_id": f"bench-{time.monotonic_ns()}",
    }
    body = urlencode(form)
    return body.encode(), sign(body, timestamp=int(time.time()), secret=secret)


def reply_json(body: bytes) -> dict[str, object] | None:
    """Return the JSON object in an acknowledgement body, or None for an empty acknowledgement."""
    if not body.strip():
        return None
    parsed = json.loads(body)
    return parsed if isinstance(parsed, dict) else None
