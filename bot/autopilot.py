"""Client for the Twilio Autopilot v1 REST API.

One `AutopilotClient` serves the whole process. It owns a few `httpx.AsyncClient`
connection pools, which it creates when entered inside the running event loop
and closes on exit. Every response other than the documented JSON becomes an
`AutopilotError` subclass; see `bot.errors` for the tree.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Mapping
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
from bot.metrics import Metrics
from bot.retry import RetryPolicy, parse_retry_after

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Twilio accepts PageSize from 1 to 1000; the largest page needs the fewest round trips.
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = MAX_PAGE_SIZE
DEFAULT_MAX_PAGES = 20
# No request may hang longer than this many seconds, however slowly bytes arrive.
REQUEST_DEADLINE = 10.0
TIMEOUTS = httpx.Timeout(connect=5.0, read=REQUEST_DEADLINE, write=5.0, pool=REQUEST_DEADLINE)
# Requests in flight at once per process: `failed` reads 100 assistants in two rounds of requests.
MAX_CONNECTIONS = 50
# httpcore 1.0's connection pool checks every pooled connection, and polls the socket of each idle
# one, whenever a request starts or ends, so its cost per request grows with the pool's size. The
# connections are split into pools of at most this many, and each request goes to the least busy pool.
POOL_SIZE = 16
# Twilio's default page size, the fallback when a server fails on a large page.
SMALL_PAGE_SIZE = 50
# The poller reads one page this size per assistant; more builds than this between polls is unusual.
RECENT_BUILDS = 50
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
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
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._base_url = settings.autopilot_base_url
        self._origin = _origin(self._base_url)
        self._page_size = min(max(page_size, 1), MAX_PAGE_SIZE)
        self._max_pages = max(max_pages, 1)
        self._max_connections = max_connections
        self._retry = retry or RetryPolicy(attempts=settings.retry_attempts, deadline=settings.lookup_timeout)
        self._transport = transport
        self._metrics = metrics or Metrics()
        self._pools: list[_Pool] = []
        self._slots: asyncio.Semaphore | None = None

    async def __aenter__(self) -> AutopilotClient:
        # Created here, inside the running loop that will use them.
        self._slots = asyncio.Semaphore(self._max_connections)
        # An injected transport has its own connection pool, so one client uses it.
        sizes = [self._max_connections] if self._transport is not None else _pool_sizes(self._max_connections)
        self._pools = [_Pool(self._make_http_client(size), size) for size in sizes]
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
        """Close the connection pools. Later requests raise `RuntimeError`."""
        if self._pools:
            pools, self._pools = self._pools, []
            for pool in pools:
                await pool.http.aclose()
            logger.info("autopilot.client_stopped", extra={"base_url": self._base_url})

    async def list_builds(self, assistant: str) -> Listing[ModelBuild]:
        """Return an assistant's model builds, newest first, without duplicates."""
        url = self._url("Assistants", validate_assistant(assistant), "ModelBuilds")
        listing = await self._walk(url, key="model_builds")
        builds = newest_first(parse_model_build(raw) for raw in listing.items)
        return Listing(builds, listing.complete)

    async def recent_builds(self, assistant: str, *, limit: int = RECENT_BUILDS) -> Listing[ModelBuild]:
        """Return the first page of an assistant's builds, newest first: one request in the normal case."""
        url = self._url("Assistants", validate_assistant(assistant), "ModelBuilds")
        page_size = min(max(limit, 1), MAX_PAGE_SIZE)
        body = await self._get_json(url, params={"PageSize": page_size}, budget=self._new_budget())
        page = parse_page(body, "model_builds")
        builds = newest_first(parse_model_build(raw) for raw in page.items)
        return Listing(builds, complete=page.next_page_url is None)

    async def fetch_build(self, assistant: str, build: str) -> ModelBuild:
        """Return one model build, addressed by its SID or unique name."""
        url = self._url("Assistants", validate_assistant(assistant), "ModelBuilds", validate_build(build))
        return parse_model_build_body(await self._get_json(url, budget=self._new_budget()))

    async def list_assistants(self) -> Listing[Assistant]:
        """Return every assistant of the account."""
        listing = await self._walk(self._url("Assistants"), key="assistants")
        return Listing([parse_assistant(raw) for raw in listing.items], listing.complete)

    def _make_http_client(self, connections: int) -> httpx.AsyncClient:
        user, password = self._settings.twilio_credentials()
        return httpx.AsyncClient(
            auth=httpx.BasicAuth(user, password),
            timeout=TIMEOUTS,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            headers={"User-Agent": f"builds-bot/{__version__}", "Accept": "application/json"},
            follow_redirects=False,
            transport=self._transport,
        )

    def _url(self, *segments: str) -> str:
        # Each segment is percent-encoded whole, so it can only ever be one path segment.
        return "/".join([self._base_url, "v1", *(quote(segment, safe="") for segment in segments)])

    async def _walk(self, first_url: str, *, key: str) -> Listing[Mapping[str, Any]]:
        budget = self._new_budget()
        body, params = await self._first_page(first_url, budget)
        # The first request carries PageSize, so a next_page_url equal to that URL is a repeat too.
        seen = {first_url, str(httpx.URL(first_url, params=params))}
        items: list[Mapping[str, Any]] = []

        for pages_read in itertools.count(1):
            page = parse_page(body, key)
            items.extend(page.items)
            if page.next_page_url is None:
                return Listing(items)

            if pages_read >= self._max_pages:
                logger.warning("autopilot.page_cap_reached", extra={"url": first_url, "max_pages": self._max_pages})
                return Listing(items, complete=False)
            if not self._may_follow(page.next_page_url, seen):
                return Listing(items, complete=False)

            seen.add(page.next_page_url)
            body = await self._get_json(page.next_page_url, budget=budget)
        raise AssertionError("unreachable: itertools.count() never ends")

    async def _first_page(self, url: str, budget: _Budget) -> tuple[object, dict[str, int]]:
        params = {"PageSize": self._page_size}
        if self._page_size <= SMALL_PAGE_SIZE:
            return await self._get_json(url, params=params, budget=budget), params

        try:
            return await self._get_json(url, params=params, budget=budget, retry_server_errors=False), params
        except ServerError as error:
            # Some servers fail on large pages, so one more try uses Twilio's default size.
            logger.warning(
                "autopilot.page_size_rejected",
                extra={"url": url, "page_size": self._page_size, "status": error.status, "retry_page_size": SMALL_PAGE_SIZE},
            )
            params = {"PageSize": SMALL_PAGE_SIZE}
            return await self._get_json(url, params=params, budget=budget), params

    def _may_follow(self, next_url: str, seen: set[str]) -> bool:
        if next_url in seen:
            logger.warning("autopilot.repeated_next_page_url", extra={"url": next_url})
            return False

        if _origin(next_url) != self._origin:
            # Credentials go only to the configured origin, whatever URL the API sends.
            logger.warning("autopilot.foreign_next_page_url", extra={"url": next_url, "allowed": self._base_url})
            return False
        return True

    def _new_budget(self) -> _Budget:
        return _Budget(deadline_at=self._retry.clock() + self._retry.deadline, clock=self._retry.clock)

    async def _get_json(
        self,
        url: str,
        *,
        budget: _Budget,
        params: Mapping[str, int] | None = None,
        retry_server_errors: bool = True,
    ) -> object:
        for attempt in itertools.count(1):
            try:
                return await self._get_json_once(url, params, timeout=min(REQUEST_DEADLINE, budget.remaining()))
            except AutopilotError as error:
                delay = self._retry_delay(error, attempt, budget, retry_server_errors=retry_server_errors)
                if delay is None:
                    raise
                self._metrics.upstream_retries.labels(reason=type(error).__name__).inc()
                logger.warning(
                    "autopilot.retrying",
                    extra={"url": url, "attempt": attempt, "delay": round(delay, 3), "error_type": type(error).__name__, "status": error.status},
                )
                await self._retry.sleep(delay)
        raise AssertionError("unreachable: itertools.count() never ends")

    def _retry_delay(self, error: AutopilotError, attempt: int, budget: _Budget, *, retry_server_errors: bool) -> float | None:
        if not _is_retryable(error, retry_server_errors=retry_server_errors):
            return None

        if attempt >= self._retry.attempts:
            logger.warning("autopilot.retries_exhausted", extra={"url": error.url, "attempts": attempt})
            return None

        delay = error.retry_after if error.retry_after is not None else self._retry.backoff(attempt)
        if delay >= budget.remaining():
            logger.warning("autopilot.retry_deadline_reached", extra={"url": error.url, "attempts": attempt, "delay": delay})
            return None
        return delay

    async def _get_json_once(self, url: str, params: Mapping[str, int] | None, *, timeout: float) -> object:
        if not self._pools or self._slots is None:
            raise RuntimeError("AutopilotClient is not open: use it as 'async with AutopilotClient(settings)'")

        async with self._slots:
            try:
                response = await self._send(url, params, timeout=timeout)
            except AutopilotError as error:
                self._metrics.upstream(url, type(error).__name__)
                raise

        self._metrics.upstream(url, response.status_code)
        _raise_for_status(response)
        try:
            return response.json()
        except ValueError as error:
            raise InvalidResponseError(
                f"the response from {_shown(response.request.url)} is not JSON", url=str(response.request.url), status=200
            ) from error

    async def _send(self, url: str, params: Mapping[str, int] | None, *, timeout: float) -> httpx.Response:
        # The semaphore admits at most `max_connections` requests, the pools' total size, so one has a free connection.
        pool = max(self._pools, key=lambda candidate: candidate.size - candidate.in_flight)
        pool.in_flight += 1
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                response = await pool.http.get(url, params=params)
        except (TimeoutError, httpx.TimeoutException) as error:
            raise ApiTimeoutError(f"request to {url} timed out after {timeout:g} s", url=url) from error
        except httpx.TransportError as error:
            raise ApiConnectionError(f"could not connect to {url}: {error.__class__.__name__}", url=url) from error
        finally:
            pool.in_flight -= 1

        logger.debug(
            "autopilot.response",
            extra={"url": str(response.request.url), "status": response.status_code, "elapsed_ms": _elapsed_ms(response)},
        )
        return response


@dataclass(slots=True)
class _Pool:
    """One httpx client, the connections its pool may hold, and the requests it is sending now."""

    http: httpx.AsyncClient
    size: int
    in_flight: int = 0


def _pool_sizes(connections: int) -> list[int]:
    """Return the sizes of the fewest pools of at most POOL_SIZE connections that hold `connections`."""
    count = max(-(-connections // POOL_SIZE), 1)
    return [connections // count + (1 if index < connections % count else 0) for index in range(count)]


@dataclass(frozen=True, slots=True)
class _Budget:
    """The time left for one lookup, across its pages and retries."""

    deadline_at: float
    clock: Callable[[], float]

    def remaining(self) -> float:
        return self.deadline_at - self.clock()


def _is_retryable(error: AutopilotError, *, retry_server_errors: bool) -> bool:
    # A 429 was never processed by Twilio, and every request here is an idempotent GET.
    if isinstance(error, ServerError):
        return retry_server_errors and error.status in RETRYABLE_STATUSES
    return isinstance(error, (RateLimitedError, ApiConnectionError, ApiTimeoutError))


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
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    raise error_type(message, url=url, status=status, code=code, more_info=more_info, retry_after=retry_after)


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
