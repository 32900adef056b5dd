"""Client for the Twilio Autopilot v1 REST API.

One `AutopilotClient` serves the whole process. It owns one `httpx.AsyncClient`,
which it creates when entered inside the running event loop and closes on
exit. Every response other than the documented JSON becomes an `AutopilotError`
subclass; see `bot.errors` for the tree.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from bot import __version__
from bot.config import Settings
from bot.errors import (
    ApiConnectionError,
    ApiTimeoutError,
    AuthenticationError,
    AutopilotError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
)
from bot.identifiers import validate_assistant, validate_build
from bot.models import Assistant, ModelBuild, newest_first, parse_assistant, parse_model_build, parse_model_build_body, parse_page

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Twilio accepts PageSize from 1 to 1000; the largest page needs the fewest round trips.
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = MAX_PAGE_SIZE
DEFAULT_MAX_PAGES = 20
# No request may hang longer than this many seconds, however slowly bytes arrive.
REQUEST_DEADLINE = 10.0
TIMEOUTS = httpx.Timeout(connect=5.0, read=REQUEST_DEADLINE, write=5.0, pool=REQUEST_DEADLINE)
MAX_CONNECTIONS = 32
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """The items of a paged list; `complete` is False when paging stopped early."""

    items: list[T]
    complete: bool = True


class AutopilotClient:
    """Read assistants and model builds from an Autopilot-compatible API.

    Use it as an async context manager inside the running event loop:

        async with AutopilotClient(settings) as client:
            builds = await client.list_builds("support-bot")
    """

    def __init__(
        self,
        settings: Settings,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_pages: int = DEFAULT_MAX_PAGES,
        max_connections: int = MAX_CONNECTIONS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._base_url = settings.autopilot_base_url
        self._origin = _origin(self._base_url)
        self._page_size = min(max(page_size, 1), MAX_PAGE_SIZE)
        self._max_pages = max(max_pages, 1)
        self._max_connections = max_connections
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(max_connections)

    async def __aenter__(self) -> AutopilotClient:
        self._http = self._make_http_client()
        logger.info("autopilot.client_started", extra={"base_url": self._base_url})
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool; later requests raise `RuntimeError`."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None
            logger.info("autopilot.client_stopped", extra={"base_url": self._base_url})

    async def list_builds(self, assistant: str) -> Listing[ModelBuild]:
        """Return an assistant's model builds, newest first, without duplicates."""
        url = self._url("Assistants", validate_assistant(assistant), "ModelBuilds")
        listing = await self._walk(url, key="model_builds")
        builds = newest_first(parse_model_build(raw) for raw in listing.items)
        return Listing(builds, listing.complete)

    async def fetch_build(self, assistant: str, build: str) -> ModelBuild:
        """Return one model build, addressed by its SID or unique name."""
        url = self._url("Assistants", validate_assistant(assistant), "ModelBuilds", validate_build(build))
        return parse_model_build_body(await self._get_json(url))

    async def list_assistants(self) -> Listing[Assistant]:
        """Return every assistant of the account."""
        listing = await self._walk(self._url("Assistants"), key="assistants")
        return Listing([parse_assistant(raw) for raw in listing.items], listing.complete)

    def _make_http_client(self) -> httpx.AsyncClient:
        user, password = self._settings.twilio_credentials()
        return httpx.AsyncClient(
            auth=httpx.BasicAuth(user, password),
            timeout=TIMEOUTS,
            limits=httpx.Limits(max_connections=self._max_connections, max_keepalive_connections=self._max_connections),
            headers={"User-Agent": f"builds-bot/{__version__}", "Accept": "application/json"},
            follow_redirects=False,
            transport=self._transport,
        )

    def _url(self, *segments: str) -> str:
        # Each segment is percent-encoded whole, so it can only ever be one path segment.
        return "/".join([self._base_url, "v1", *(quote(segment, safe="") for segment in segments)])

    async def _walk(self, first_url: str, *, key: str) -> Listing[Mapping[str, Any]]:
        items: list[Mapping[str, Any]] = []
        seen: set[str] = set()
        url: str | None = first_url
        params: dict[str, int] | None = {"PageSize": self._page_size}

        for _ in range(self._max_pages):
            page = parse_page(await self._get_json(url, params=params), key)
            items.extend(page.items)
            seen.add(url)
            if params is not None:
                # The first request carries PageSize, so a next_page_url equal to that URL is a repeat too.
                seen.add(str(httpx.URL(url, params=params)))
            url, params = page.next_page_url, None
            if url is None:
                return Listing(items)
            if not self._may_follow(url, seen):
                return Listing(items, complete=False)

        logger.warning("autopilot.page_cap_reached", extra={"url": first_url, "max_pages": self._max_pages})
        return Listing(items, complete=False)

    def _may_follow(self, next_url: str, seen: set[str]) -> bool:
        if next_url in seen:
            logger.warning("autopilot.repeated_next_page_url", extra={"url": next_url})
            return False

        if _origin(next_url) != self._origin:
            # Credentials go only to the configured origin, whatever URL the API sends.
            logger.warning("autopilot.foreign_next_page_url", extra={"url": next_url, "allowed": self._base_url})
            return False
        return True

    async def _get_json(self, url: str, *, params: Mapping[str, int] | None = None) -> object:
        if self._http is None:
            raise RuntimeError("AutopilotClient is not open: use it as 'async with AutopilotClient(settings)'")

        async with self._slots:
            response = await self._send(url, params)

        _raise_for_status(response)
        try:
            return response.json()
        except ValueError as error:
            raise InvalidResponseError(
                f"the response from {_shown(response.request.url)} is not JSON", url=str(response.request.url), status=200
            ) from error

    async def _send(self, url: str, params: Mapping[str, int] | None) -> httpx.Response:
        assert self._http is not None
        try:
            async with asyncio.timeout(REQUEST_DEADLINE):
                response = await self._http.get(url, params=params)
        except (TimeoutError, httpx.TimeoutException) as error:
            raise ApiTimeoutError(f"request to {url} timed out after {REQUEST_DEADLINE:g} s", url=url) from error
        except httpx.TransportError as error:
            raise ApiConnectionError(f"could not connect to {url}: {error.__class__.__name__}", url=url) from error

        logger.debug(
            "autopilot.response",
            extra={"url": str(response.request.url), "status": response.status_code, "elapsed_ms": _elapsed_ms(response)},
        )
        return response


def _raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    if status == 200:
        return

    url = str(response.request.url)
    body = _twilio_error_body(response)
    code = body.get("code")
    more_info = body.get("more_info")
    detail = body.get("message") or response.reason_phrase
    if 300 <= status <= 399:
        detail = f"redirect to {response.headers.get('Location', '(no Location)')!r} not followed"

    message = f"HTTP {status} from {url}: {detail}"
    error_type = _error_type(status, code)
    if error_type is RateLimitedError:
        raise RateLimitedError(
            message, retry_after=_retry_after(response), url=url, status=status, code=code, more_info=more_info
        )
    raise error_type(message, url=url, status=status, code=code, more_info=more_info)


def _error_type(status: int, code: int | None) -> type[AutopilotError]:
    if status == 401 or code == 20003:
        return AuthenticationError
    if status == 404 or code == 20404:
        return NotFoundError
    if status == 429 or code == 20429:
        return RateLimitedError
    if 500 <= status <= 599:
        return ServerError
    if 400 <= status <= 499:
        return RequestRejectedError
    # A redirect or any other status is not the documented response.
    return InvalidResponseError


def _twilio_error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    if not isinstance(body, Mapping):
        return {}

    code = body.get("code")
    return {
        "code": code if isinstance(code, int) and not isinstance(code, bool) else None,
        "message": str(body["message"])[:200] if body.get("message") else None,
        "more_info": body.get("more_info") if isinstance(body.get("more_info"), str) else None,
    }


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return (scheme, "", None)
    return (scheme, (parts.hostname or "").lower(), port)


def _shown(url: httpx.URL) -> str:
    return str(url.copy_with(query=None))


def _elapsed_ms(response: httpx.Response) -> int | None:
    try:
        return round(response.elapsed.total_seconds() * 1000)
    except RuntimeError:
        return None
