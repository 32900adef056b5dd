"""A scriptable stand-in for the Twilio Autopilot API, for tests.

`AutopilotStandIn` is an aiohttp.web server on 127.0.0.1 with a free port. It
records every request exactly as received and responds on each path with a
`CannedResponse` or a handler that the test sets. It serves lists across pages
with absolute `meta.next_page_url` values. It can also hold requests on an
`asyncio.Event`, so tests control latency and concurrency without sleeping.

    async with AutopilotStandIn() as stand_in:
        builds = [{"sid": f"UG{number:032x}"} for number in range(7)]
        stand_in.serve_pages("/v1/Assistants/support/ModelBuilds", "model_builds", builds, page_size=3)
        settings = load_settings({..., "AUTOPILOT_BASE_URL": stand_in.base_url})
        async with AutopilotClient(settings) as client:
            listing = await client.list_builds("support")
        assert len(stand_in.requests) == 3

Paths are matched on the raw path, without the query and without decoding
percent escapes, so `/v1/Assistants/a%2Fb` and `/v1/Assistants/a/b` are
different routes. A path without a route gets Twilio's 404 body (code 20404).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote

from aiohttp import web

HOST = "127.0.0.1"
# Seconds that cleanup waits for handlers still running when the stand-in stops.
SHUTDOWN_TIMEOUT = 1.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the stand-in received it.

    `raw_path` is the path and query string byte for byte as the client sent
    them (aiohttp's `request.raw_path`), with no percent escape decoded.
    """

    method: str
    raw_path: str
    authorization: str | None

    @property
    def path(self) -> str:
        """Return the raw path without the query string."""
        return self.raw_path.partition("?")[0]

    @property
    def query(self) -> str:
        """Return the raw query string without the leading '?', or ''."""
        return self.raw_path.partition("?")[2]


@dataclass(frozen=True, slots=True)
class CannedResponse:
    """A canned response.

    The body is `body` when it is set (bytes or text, sent as is, so b"" sends
    an empty body), else `json` serialised as JSON. `content_type` defaults to
    application/json for JSON and text/plain for a raw body.
    """

    status: int = 200
    json: Any = None
    body: bytes | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None

    def to_response(self) -> web.Response:
        """Build the aiohttp response."""
        if self.body is None:
            payload = json.dumps(self.json).encode()
            content_type = self.content_type or "application/json"
        else:
            payload = self.body.encode() if isinstance(self.body, str) else self.body
            content_type = self.content_type or "text/plain"

        headers = {"Content-Type": content_type, **self.headers}
        return web.Response(status=self.status, body=payload, headers=headers)


def twilio_error(status: int, code: int, message: str) -> CannedResponse:
    """Return a response with Twilio's error body (code, message, more_info, status)."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return CannedResponse(status=status, json=body)


def page_token(index: int) -> str:
    """Return the percent-encoded PageToken of page `index`, such as 'PA%2B1x%3D%3D'.

    The token decodes to 'PA+1x==', so a client that decodes or re-encodes the
    query changes its bytes and no longer matches any page.
    """
    return quote(f"PA+{index}x==", safe="")


class AutopilotStandIn:
    """An Autopilot API stand-in on 127.0.0.1, used as an async context manager.

    Attributes:
        base_url: "http://127.0.0.1:PORT", set when the server starts.
        port: the TCP port that the server listens on.
        requests: every request received, in arrival order.
        in_flight: requests whose handler is running, including held ones.
        max_in_flight: the largest value that `in_flight` has reached.
    """

    def __init__(self) -> None:
        self.base_url = ""
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._routes: dict[str, CannedResponse | Handler] = {}
        self._faults: dict[str, list[CannedResponse]] = {}
        self._holds: list[tuple[str | None, asyncio.Event]] = []
        self._changed = asyncio.Condition()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> AutopilotStandIn:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await self._runner.setup()

        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.base_url = f"http://{HOST}:{self.port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Held requests stop waiting and get a 503, so cleanup does not wait for them.
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def respond(self, path: str, response: CannedResponse | Handler) -> None:
        """Respond to every request to the raw `path` with `response`, or by calling it as a handler."""
        self._routes[path] = response

    def fail_next(self, path: str, *responses: CannedResponse, query: str | None = None) -> None:
        """Respond to the next requests to the raw `path` with `responses`, in order, before its route.

        With `query`, only requests whose raw query string contains it are failed.
        """
        self._faults.setdefault(path + "?" + (query or ""), []).extend(responses)

    def respond_json(self, path: str, body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        """Respond to every request to the raw `path` with `body` as JSON."""
        self.respond(path, CannedResponse(status=status, json=body, headers=dict(headers or {})))

    def serve_pages(self, path: str, key: str, items: Sequence[Any], *, page_size: int) -> list[str]:
        """Serve `items` under `key` on `path`, `page_size` items per page.

        A request without a PageToken gets the first page, whatever its
        PageSize. Each later page is served only at the exact raw query of the
        `meta.next_page_url` that points to it, and any other PageToken gets
        HTTP 400 with Twilio code 20001.

        Returns the absolute `meta.next_page_url` values in page order, without
        the final null.
        """
        chunks = [list(items[start : start + page_size]) for start in range(0, len(items), page_size)] or [[]]
        queries = [f"PageSize={page_size}&Page={index}&PageToken={page_token(index)}" for index in range(len(chunks))]
        urls = [f"{self.base_url}{path}?{query}" for query in queries]
        pages_by_query = {query: index for index, query in enumerate(queries)}

        async def serve_page(request: web.Request) -> web.StreamResponse:
            query = request.raw_path.partition("?")[2]
            index = pages_by_query.get(query, 0 if "PageToken=" not in query else -1)
            if index < 0:
                return twilio_error(400, 20001, f"Invalid PageToken in query {query!r}").to_response()

            next_url = urls[index + 1] if index + 1 < len(chunks) else None
            meta = {
                "page": index,
                "page_size": page_size,
                "first_page_url": urls[0],
                "previous_page_url": urls[index - 1] if index > 0 else None,
                "url": urls[index],
                "next_page_url": next_url,
                "key": key,
            }
            return web.json_response({key: chunks[index], "meta": meta})

        self.respond(path, serve_page)
        return urls[1:]

    def hold(self, release: asyncio.Event, path: str | None = None) -> None:
        """Make requests to the raw `path` (to every path when None) wait until `release` is set.

        A request is recorded and counted in `in_flight` before it waits. When
        the stand-in stops, held requests get HTTP 503 instead.
        """
        self._holds.append((path, release))

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Return the recorded requests whose raw path, without the query, is `path`."""
        return [request for request in self.requests if request.path == path]

    async def wait_for_requests(self, count: int) -> None:
        """Wait until at least `count` requests have arrived."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.requests) >= count)

    async def wait_for_in_flight(self, count: int) -> None:
        """Wait until at least `count` requests are in flight at once."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight >= count)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        recorded = RecordedRequest(request.method, request.raw_path, request.headers.get("Authorization"))
        self.requests.append(recorded)
        await self._change_in_flight(+1)
        try:
            if not await self._wait_for_release(recorded.path):
                return web.Response(status=503, text="stand-in stopped while the request was held")
            return await self._respond(recorded.path, request)
        finally:
            await self._change_in_flight(-1)

    async def _change_in_flight(self, step: int) -> None:
        async with self._changed:
            self.in_flight += step
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._changed.notify_all()

    async def _wait_for_release(self, path: str) -> bool:
        """Wait for every hold that matches `path`, and return False if the stand-in stops first."""
        for held_path, release in self._holds:
            if held_path not in (None, path):
                continue

            waiters = {asyncio.ensure_future(release.wait()), asyncio.ensure_future(self._closing.wait())}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            if not release.is_set():
                return False
        return True

    def _next_fault(self, path: str, query: str) -> CannedResponse | None:
        for key, queue in self._faults.items():
            fault_path, _, fault_query = key.partition("?")
            if fault_path == path and fault_query in query and queue:
                return queue.pop(0)
        return None

    async def _respond(self, path: str, request: web.Request) -> web.StreamResponse:
        fault = self._next_fault(path, request.raw_path.partition("?")[2])
        if fault is not None:
            return fault.to_response()

        route = self._routes.get(path)
        if route is None:
            return twilio_error(404, 20404, f"The requested resource {path} was not found").to_response()
        if isinstance(route, CannedResponse):
            return route.to_response()
        return await route(request)
