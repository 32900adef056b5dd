"""An Autopilot v1 compatible HTTP server for demos, benchmarks and tests.

The sandbox serves the read-only part of Twilio's Autopilot v1 API that the bot
uses: list and fetch assistants, list and fetch model builds. It returns
Twilio's JSON shapes, including paging metadata and error bodies, for the
``SandboxDataset`` it keeps in memory.

Example::

    async with SandboxServer() as server:
        print(server.base_url, server.credentials.account_sid)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TextIO

from aiohttp import BasicAuth, hdrs, web

from bot.sandbox_data import DEMO_ACCOUNT_SID, JsonDict, SandboxDataset, build_demo_dataset, with_absolute_urls

__all__ = [
    "DEMO_ACCOUNT_SID",
    "DEMO_AUTH_TOKEN",
    "REQUEST_LOG",
    "RequestRecord",
    "SandboxCredentials",
    "SandboxServer",
    "create_sandbox_app",
    "run_sandbox",
]

logger = logging.getLogger(__name__)

DEMO_AUTH_TOKEN = "feedc0de" * 4
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

# Twilio error codes: 20001 invalid parameter, 20003 authentication failed,
# 20004 method not allowed, 20404 resource not found.
_INVALID_PARAMETER = 20001
_AUTHENTICATE = 20003
_METHOD_NOT_ALLOWED = 20004
_NOT_FOUND = 20404

# In-flight requests get this long after the configured latency to finish when the server stops.
_SHUTDOWN_GRACE_SECONDS = 2.0

_PAGE_TOKEN_PREFIX = "PT"
_PAGE_TOKEN_BODY = re.compile(r"offset:(\d{1,12})")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True, repr=False)
class SandboxCredentials:
    """Account SID and auth token that the sandbox accepts in HTTP Basic auth."""

    account_sid: str
    auth_token: str

    def __post_init__(self) -> None:
        if ":" in self.account_sid:
            raise ValueError(f"account_sid {self.account_sid!r} contains ':', which HTTP Basic auth cannot carry")

    def __repr__(self) -> str:
        return f"SandboxCredentials(account_sid={self.account_sid!r}, auth_token='***')"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the sandbox handled: method, decoded path, query string as sent, and outcome."""

    method: str
    path: str
    query_string: str
    authorized: bool
    status: int


REQUEST_LOG = web.AppKey("request_log", list[RequestRecord])
_DATASET = web.AppKey("dataset", SandboxDataset)
_CREDENTIALS = web.AppKey("credentials", SandboxCredentials)
_LATENCY = web.AppKey("latency", float)
_AUTHORIZED = web.RequestKey("authorized", bool)


class _ApiError(Exception):
    """Error that the error middleware sends as a Twilio JSON error body."""

    def __init__(self, *, status: int, code: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class _PageRequest:
    page_size: int
    page: int
    offset: int
    page_token: str | None


def create_sandbox_app(
    *, dataset: SandboxDataset, credentials: SandboxCredentials, latency: float = 0.0
) -> web.Application:
    """Create the sandbox application, which waits ``latency`` seconds before every response."""
    if latency < 0:
        raise ValueError(f"latency must be zero or more seconds, got {latency!r}")

    app = web.Application(middlewares=[_exchange_middleware, _error_middleware, _auth_middleware])
    app[_DATASET] = dataset
    app[_CREDENTIALS] = credentials
    app[_LATENCY] = latency
    app[REQUEST_LOG] = []

    app.router.add_get("/v1/Assistants", _list_assistants, allow_head=False)
    app.router.add_get("/v1/Assistants/{assistant}", _fetch_assistant, allow_head=False)
    app.router.add_get("/v1/Assistants/{assistant}/ModelBuilds", _list_builds, allow_head=False)
    app.router.add_get("/v1/Assistants/{assistant}/ModelBuilds/{build}", _fetch_build, allow_head=False)
    return app


@web.middleware
async def _exchange_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Delay the response by the configured latency, then log and record the exchange."""
    await asyncio.sleep(request.app[_LATENCY])

    # An exception that escapes the handler reaches aiohttp, which sends a 500 response.
    status = web.HTTPInternalServerError.status_code
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        _record(request, status)


def _record(request: web.Request, status: int) -> None:
    authorized = request.get(_AUTHORIZED, False)
    record = RequestRecord(request.method, request.path, request.rel_url.raw_query_string, authorized, status)
    request.app[REQUEST_LOG].append(record)

    # The Authorization header and the query string stay out of the log.
    extra = {"method": request.method, "path": request.path, "status": status}
    logger.debug("Sandbox responded to %s %s with %d", request.method, request.path, status, extra=extra)


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn sandbox and routing errors into Twilio error bodies."""
    try:
        return await handler(request)
    except _ApiError as error:
        return _error_response(error)
    except web.HTTPMethodNotAllowed as error:
        allow = ", ".join(sorted(error.allowed_methods))
        message = f"Method {request.method} is not allowed on {request.path}. Allowed methods: {allow}"
        return _error_response(
            _ApiError(status=405, code=_METHOD_NOT_ALLOWED, message=message, headers={hdrs.ALLOW: allow})
        )
    except web.HTTPNotFound:
        return _error_response(_not_found(request))


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Reject every request without the sandbox's HTTP Basic credentials."""
    authorized = _is_authorized(request.headers.get(hdrs.AUTHORIZATION), request.app[_CREDENTIALS])
    request[_AUTHORIZED] = authorized
    if not authorized:
        raise _ApiError(
            status=401,
            code=_AUTHENTICATE,
            message="Authenticate",
            headers={hdrs.WWW_AUTHENTICATE: 'Basic realm="Twilio API"'},
        )

    return await handler(request)


def _is_authorized(header: str | None, credentials: SandboxCredentials) -> bool:
    if header is None:
        return False

    try:
        auth = BasicAuth.decode(header)
    except ValueError:
        return False

    # Both parts are always compared in constant time, so the response time does not
    # reveal which part was wrong.
    login_matches = hmac.compare_digest(auth.login.encode(), credentials.account_sid.encode())
    token_matches = hmac.compare_digest(auth.password.encode(), credentials.auth_token.encode())
    return login_matches and token_matches


def _error_response(error: _ApiError) -> web.Response:
    body = {
        "code": error.code,
        "message": error.message,
        "more_info": f"https://www.twilio.com/docs/errors/{error.code}",
        "status": error.status,
    }
    return web.json_response(body, status=error.status, headers=error.headers)


def _not_found(request: web.Request) -> _ApiError:
    message = f"The requested resource {request.path} was not found"
    return _ApiError(status=404, code=_NOT_FOUND, message=message)


async def _list_assistants(request: web.Request) -> web.Response:
    """Handle ListAssistant."""
    assistants = request.app[_DATASET].assistants_newest_first()
    return _list_response(request, "assistants", assistants)


async def _fetch_assistant(request: web.Request) -> web.Response:
    """Handle FetchAssistant, with the assistant's SID or unique_name in the path."""
    assistant = _find_assistant(request)
    return web.json_response(with_absolute_urls(assistant, _base_url(request)))


async def _list_builds(request: web.Request) -> web.Response:
    """Handle ListModelBuild."""
    assistant = _find_assistant(request)
    builds = request.app[_DATASET].builds_newest_first(assistant["sid"])
    return _list_response(request, "model_builds", builds)


async def _fetch_build(request: web.Request) -> web.Response:
    """Handle FetchModelBuild, with SIDs or unique_names in the path."""
    assistant = _find_assistant(request)
    build = request.app[_DATASET].find_build(assistant["sid"], request.match_info["build"])
    if build is None:
        raise _not_found(request)

    return web.json_response(with_absolute_urls(build, _base_url(request)))


def _find_assistant(request: web.Request) -> JsonDict:
    assistant = request.app[_DATASET].find_assistant(request.match_info["assistant"])
    if assistant is None:
        raise _not_found(request)
    return assistant


def _base_url(request: web.Request) -> str:
    # Built from the scheme and the Host header of the request, like Twilio's absolute URLs.
    return str(request.url.origin())


def _list_response(request: web.Request, key: str, records: list[JsonDict]) -> web.Response:
    paging = _parse_page_request(request)
    page = records[paging.offset : paging.offset + paging.page_size]
    has_next = paging.offset + paging.page_size < len(records)

    base_url = _base_url(request)
    body = {
        key: [with_absolute_urls(record, base_url) for record in page],
        "meta": _page_meta(request, key, paging, has_next=has_next),
    }
    return web.json_response(body)


def _page_meta(request: web.Request, key: str, paging: _PageRequest, *, has_next: bool) -> JsonDict:
    size = paging.page_size
    next_url = None
    if has_next:
        next_url = _page_url(request, size, paging.page + 1, _encode_page_token(paging.offset + size))

    return {
        "first_page_url": _page_url(request, size, 0, None),
        "key": key,
        "next_page_url": next_url,
        "page": paging.page,
        "page_size": size,
        "previous_page_url": _previous_page_url(request, paging),
        "url": _page_url(request, size, paging.page, paging.page_token),
    }


def _previous_page_url(request: web.Request, paging: _PageRequest) -> str | None:
    if paging.offset == 0:
        return None

    offset = max(paging.offset - paging.page_size, 0)
    page = max(paging.page - 1, 0)
    return _page_url(request, paging.page_size, page, _encode_page_token(offset))


def _page_url(request: web.Request, page_size: int, page: int, page_token: str | None) -> str:
    query: dict[str, str | int] = {"PageSize": page_size, "Page": page}
    if page_token is not None:
        query["PageToken"] = page_token
    return str(request.url.with_query(query))


def _parse_page_request(request: web.Request) -> _PageRequest:
    """Parse PageSize, Page and PageToken. A PageToken, when given, sets where the page starts."""
    query = request.query
    page_size = _integer_parameter(query, "PageSize", DEFAULT_PAGE_SIZE, minimum=1, maximum=MAX_PAGE_SIZE)
    page = _integer_parameter(query, "Page", 0, minimum=0, maximum=None)

    page_token = query.get("PageToken")
    offset = page * page_size if page_token is None else _decode_page_token(page_token)
    return _PageRequest(page_size=page_size, page=page, offset=offset, page_token=page_token)


def _integer_parameter(
    query: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int | None
) -> int:
    raw = query.get(name)
    if raw is None:
        return default

    value: int | None = None
    if re.fullmatch(r"-?\d+", raw):
        try:
            value = int(raw)
        except ValueError:  # longer than sys.get_int_max_str_digits() allows
            value = None

    if value is None or value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of {minimum} or more"
        raise _invalid_parameter(name, raw, f"Expected an integer {bounds}.")
    return value


def _encode_page_token(offset: int) -> str:
    encoded = base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")
    return _PAGE_TOKEN_PREFIX + encoded


def _decode_page_token(token: str) -> int:
    expected = "Use the PageToken of a next_page_url or previous_page_url from this server."
    if not token.startswith(_PAGE_TOKEN_PREFIX):
        raise _invalid_parameter("PageToken", token, expected)

    encoded = token.removeprefix(_PAGE_TOKEN_PREFIX)
    try:
        decoded = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid_parameter("PageToken", token, expected) from None

    match = _PAGE_TOKEN_BODY.fullmatch(decoded)
    if match is None:
        raise _invalid_parameter("PageToken", token, expected)
    return int(match.group(1))


def _invalid_parameter(name: str, raw: str, expected: str) -> _ApiError:
    message = f"Invalid parameter {name}: {raw!r}. {expected}"
    return _ApiError(status=400, code=_INVALID_PARAMETER, message=message)


class SandboxServer:
    """Serve a sandbox app on a TCP port for the duration of an ``async with`` block.

    ``dataset=None`` builds the demo dataset when the server starts, and
    ``credentials=None`` accepts ``DEMO_ACCOUNT_SID`` with ``DEMO_AUTH_TOKEN``.
    Port 0 picks a free port, and ``base_url`` returns the address in use.
    """

    def __init__(
        self,
        *,
        dataset: SandboxDataset | None = None,
        credentials: SandboxCredentials | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
    ) -> None:
        self._dataset = dataset
        self._credentials = credentials or SandboxCredentials(DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN)
        self._host = host
        self._port = port
        self._latency = latency
        self._app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start listening, after building the demo dataset if none was given."""
        if self._runner is not None:
            raise RuntimeError(f"SandboxServer is already running at {self._base_url}")

        if self._dataset is None:
            self._dataset = build_demo_dataset(now=datetime.now(UTC))
        app = create_sandbox_app(dataset=self._dataset, credentials=self._credentials, latency=self._latency)

        # access_log=None because the sandbox logs each request itself, at DEBUG.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self._latency + _SHUTDOWN_GRACE_SECONDS)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise

        self._app, self._runner = app, runner
        self._base_url = _format_base_url(runner.addresses[0])
        logger.debug("Sandbox listening at %s", self._base_url, extra={"base_url": self._base_url})

    async def stop(self) -> None:
        """Stop listening. The request log and the dataset stay readable."""
        if self._runner is None:
            return

        runner, self._runner = self._runner, None
        await runner.cleanup()
        logger.debug("Sandbox at %s stopped", self._base_url, extra={"base_url": self._base_url})

    @property
    def base_url(self) -> str:
        """Root URL of the server, such as ``http://127.0.0.1:54321``, without a trailing slash."""
        if self._base_url is None:
            raise RuntimeError("SandboxServer has no address yet: start it with 'async with' or start()")
        return self._base_url

    @property
    def credentials(self) -> SandboxCredentials:
        """Credentials the server accepts."""
        return self._credentials

    @property
    def dataset(self) -> SandboxDataset:
        """Data the server serves. Changes to it show in the next response."""
        if self._dataset is None:
            raise RuntimeError("SandboxServer builds its demo dataset on start: start it first")
        return self._dataset

    @property
    def requests(self) -> list[RequestRecord]:
        """Requests handled since the server last started, oldest first."""
        if self._app is None:
            raise RuntimeError("SandboxServer has no request log yet: start it first")
        return self._app[REQUEST_LOG]


def _format_base_url(address: tuple[object, ...]) -> str:
    host, port = str(address[0]), address[1]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def run_sandbox(
    *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0, out: TextIO | None = None
) -> None:
    """Serve the demo sandbox until cancelled, after printing the settings that reach it.

    ``out`` receives ``AUTOPILOT_BASE_URL``, ``TWILIO_ACCOUNT_SID`` and
    ``TWILIO_AUTH_TOKEN`` lines. None means standard output at call time.
    """
    stream = sys.stdout if out is None else out
    async with SandboxServer(host=host, port=port, latency=latency) as server:
        extra = {"base_url": server.base_url, "account_sid": server.credentials.account_sid}
        logger.info("Autopilot sandbox started at %s", server.base_url, extra=extra)
        _print_settings(server, stream)
        try:
            await asyncio.Event().wait()
        finally:
            logger.info("Autopilot sandbox at %s is stopping", server.base_url, extra=extra)


def _print_settings(server: SandboxServer, stream: TextIO) -> None:
    # `export` lines, so pasting them into a shell reaches the commands run after.
    stream.write(f"export AUTOPILOT_BASE_URL={server.base_url}\n")
    stream.write(f"export TWILIO_ACCOUNT_SID={server.credentials.account_sid}\n")
    stream.write(f"export TWILIO_AUTH_TOKEN={server.credentials.auth_token}\n")
    stream.flush()
