"""A local stand-in for Slack: Web API methods, response_url endpoints, Socket Mode, and request signing.

`SlackStandIn` records every call it receives so tests assert on what Slack
would have been sent. `signed_command()` builds a slash command request
exactly as Slack signs it: v0, HMAC-SHA256 over `v0:timestamp:body`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

TEAM_ID = "T0TEST0001"
BOT_USER_ID = "U0BOT00001"
BOT_ID = "B0BOT00001"


@dataclass
class SlackCall:
    """One request the stand-in received."""

    path: str
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class Fault:
    """One scripted failure: the status, body, content type and headers of the response."""

    status: int
    body: str = ""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=self.body, content_type=self.content_type, headers=self.headers)


@dataclass
class SlackStandIn:
    """Slack's Web API (`/api/<method>`), response URLs (`/response/<id>`) and a Socket Mode endpoint."""

    host: str = "127.0.0.1"
    calls: list[SlackCall] = field(default_factory=list)
    responses: asyncio.Queue[SlackCall] = field(default_factory=asyncio.Queue)
    socket_acks: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    _socket_connected: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _faults: dict[str, list[Fault]] = field(default_factory=dict)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    posted_ts: list[str] = field(default_factory=list)

    async def __aenter__(self) -> SlackStandIn:
        app = web.Application()
        app.router.add_post("/api/{method}", self._web_api)
        app.router.add_post("/response/{key}", self._response_url)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.base_url = f"http://{self.host}:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for socket in self._sockets:
            await socket.close()
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        """Return the Web API base URL, the value for SLACK_API_URL."""
        return f"{self.base_url}/api/"

    def response_url(self) -> str:
        """Return a fresh response_url on this stand-in."""
        return f"{self.base_url}/response/{next(self._ids)}"

    def api_calls(self, method: str) -> list[SlackCall]:
        """Return the recorded calls of one Web API method, such as `auth.test`."""
        return [call for call in self.calls if call.path == f"/api/{method}"]

    async def next_response(self, timeout: float = 10.0) -> SlackCall:
        """Wait for the next message posted to any response_url."""
        return await asyncio.wait_for(self.responses.get(), timeout)

    async def wait_for_socket(self, timeout: float = 10.0) -> None:
        """Wait until a Socket Mode client has connected."""
        await asyncio.wait_for(self._socket_connected.wait(), timeout)

    async def send_envelope(self, envelope: dict[str, Any]) -> None:
        """Send a Socket Mode envelope to every connected client."""
        for socket in self._sockets:
            await socket.send_json(envelope)

    def fail(self, target: str, *faults: Fault) -> None:
        """Respond to the next requests to `target` with `faults`, in order.

        `target` is a Web API method such as `chat.postEphemeral`, or `response_url` for every response URL.
        """
        self._faults.setdefault(target, []).extend(faults)

    async def drop_sockets(self) -> None:
        """Close every Socket Mode connection from the server side, as a Slack deploy does."""
        self._socket_connected.clear()
        sockets, self._sockets = self._sockets, []
        for socket in sockets:
            await socket.close()

    async def wait_for_call(self, method: str, timeout: float = 10.0) -> list[SlackCall]:
        """Wait until the Web API method `method` has been called, and return its calls."""

        async def arrived() -> list[SlackCall]:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self.api_calls(method)))
            return self.api_calls(method)

        return await asyncio.wait_for(arrived(), timeout)

    async def wait_for_next_call(self, timeout: float = 30.0) -> None:
        """Wait until one more request of any kind reaches the stand-in."""

        async def arrived() -> None:
            async with self._changed:
                count = len(self.calls)
                await self._changed.wait_for(lambda: len(self.calls) > count)

        await asyncio.wait_for(arrived(), timeout)

    async def _record(self, request: web.Request) -> SlackCall:
        call = SlackCall(request.path, dict(request.headers), await _read_body(request))
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
        return call

    def _next_fault(self, target: str) -> Fault | None:
        queue = self._faults.get(target)
        return queue.pop(0) if queue else None

    async def _web_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        call = await self._record(request)
        fault = self._next_fault(method)
        if fault is not None:
            return fault.response()
        if method == "auth.test":
            return web.json_response(
                {"ok": True, "url": "https://test.slack.com/", "team": "Test", "user": "builds-bot",
                 "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID}
            )
        if method == "apps.connections.open":
            return web.json_response({"ok": True, "url": f"ws://{self.host}:{self._port()}/socket"})
        if method == "chat.postMessage":
            ts = f"1796385600.{next(self._ids):06d}"
            self.posted_ts.append(ts)
            return web.json_response({"ok": True, "channel": _field(call.body, "channel"), "ts": ts})
        if method == "chat.update":
            return web.json_response({"ok": True, "channel": _field(call.body, "channel"), "ts": _field(call.body, "ts")})
        return web.json_response({"ok": True})

    async def _response_url(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        fault = self._next_fault("response_url")
        if fault is not None:
            return fault.response()

        await self.responses.put(call)
        return web.Response(text="ok")

    def response_url_calls(self) -> list[SlackCall]:
        """Return every request to any response_url, failed ones included."""
        return [call for call in self.calls if call.path.startswith("/response/")]

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json({"type": "hello", "num_connections": 1, "debug_info": {"host": "stand-in"}})
        self._socket_connected.set()
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                await self.socket_acks.put(json.loads(message.data))
        return socket

    def _port(self) -> int:
        assert self._runner is not None
        return self._runner.addresses[0][1]


async def _read_body(request: web.Request) -> Any:
    text = await request.text()
    try:
        return json.loads(text)
    except ValueError:
        return text


def _field(body: Any, name: str) -> Any:
    return body.get(name) if isinstance(body, dict) else None


def command_form(text: str, *, response_url: str, command: str = "/builds", user_id: str = "U0ENGINEER") -> dict[str, str]:
    """Return the form fields Slack sends for a slash command."""
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM_ID,
        "team_domain": "test",
        "channel_id": "C0INCIDENT",
        "channel_name": "incident",
        "user_id": user_id,
        "user_name": "oncall",
        "command": command,
        "text": text,
        "api_app_id": "A0BUILDS01",
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": f"trigger-{time.monotonic_ns()}",
    }


def signed_action(
    action_id: str, value: str, *, secret: str, response_url: str, user_id: str = "U0ENGINEER", channel_id: str = "C0INCIDENT"
) -> tuple[str, dict[str, str]]:
    """Return the body and headers of a button click (block_actions) signed like Slack's."""
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "test"},
        "user": {"id": user_id, "username": "oncall", "team_id": TEAM_ID},
        "api_app_id": "A0BUILDS01",
        "container": {"type": "message", "message_ts": "1796385600.000001", "channel_id": channel_id, "is_ephemeral": False},
        "trigger_id": f"trigger-{time.monotonic_ns()}",
        "channel": {"id": channel_id, "name": "incident"},
        "response_url": response_url,
        "actions": [
            {"action_id": action_id, "block_id": "alert-buttons", "value": value, "type": "button", "action_ts": str(time.time())}
        ],
    }
    body = urlencode({"payload": json.dumps(payload)})
    return body, sign(body, secret=secret, timestamp=int(time.time()))


def signed_event(event: dict[str, Any], *, secret: str, event_id: str | None = None) -> tuple[str, dict[str, str]]:
    """Return the body and headers of an Events API delivery signed like Slack's."""
    envelope = {
        "token": "legacy-verification-token",
        "team_id": TEAM_ID,
        "api_app_id": "A0BUILDS01",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{time.monotonic_ns()}",
        "event_time": int(time.time()),
    }
    body = json.dumps(envelope)
    headers = sign(body, secret=secret, timestamp=int(time.time()))
    return body, {**headers, "Content-Type": "application/json"}


def sign(body: str, *, secret: str, timestamp: int) -> dict[str, str]:
    """Return the headers Slack adds to a request: timestamp and v0 HMAC-SHA256 signature."""
    base = f"v0:{timestamp}:{body}".encode()
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def signed_command(
    text: str, *, secret: str, response_url: str, timestamp: int | None = None, command: str = "/builds"
) -> tuple[str, dict[str, str]]:
    """Return the body and headers of a slash command request signed like Slack's."""
    body = urlencode(command_form(text, response_url=response_url, command=command))
    return body, sign(body, secret=secret, timestamp=int(time.time()) if timestamp is None else timestamp)
