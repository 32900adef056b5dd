"""The command core: command text in, `Reply` out.

The Slack listeners and the terminal commands share this one path. Lookups go
through the `LookupCache`, so concurrent identical lookups make one upstream
request. With `cached_only=True` a lookup never does I/O and raises
`CacheMiss` instead, so a listener can put a cache hit into the
acknowledgement itself.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from cachetools import LRUCache

from bot.alerts.replies import mute_note
from bot.alerts.service import AlertCommands, Invocation
from bot.autopilot import AutopilotClient, Listing
from bot.blocks import MAX_BLOCKS
from bot.cache import Entry, LookupCache
from bot.commands import AssistantBuilds, BuildDetails, Command, FailedBuilds, Help, Overview, StateCommand, parse_command
from bot.config import Settings
from bot.errors import (
    ApiConnectionError,
    ApiTimeoutError,
    AutopilotError,
    CacheMiss,
    InputError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    StateUnavailableError,
)
from bot.formatting import name
from bot.metrics import Metrics
from bot.shared_cache import SharedCache
from bot.models import ModelBuild
from bot.render import (
    AssistantFailures,
    FailedReport,
    Reply,
    mark_stale,
    render_api_error,
    render_assistant_builds,
    render_build_details,
    render_failed,
    render_help,
    render_input_error,
    render_internal_error,
    render_not_found,
    render_state_unavailable,
    with_note,
    without_buttons,
)
from bot.overview import overview_row, render_overview, sort_rows
from bot.state.base import Mute
from bot.stats import failed_within
from bot.views import ButtonCodec, ViewState

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


PREVIEW_BUILDS = 3
# Rendered replies kept for repeats within one second: a few per assistant being looked at.
RENDERED_REPLIES = 64


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def is_outage(error: Exception) -> bool:
    """Return whether `error` means the API is unavailable, so last good data may stand in."""
    return isinstance(error, (ServerError, RateLimitedError, ApiTimeoutError, ApiConnectionError, InvalidResponseError))


@dataclass(frozen=True, slots=True)
class ScopedBuilds:
    """The builds of one assistant in scope, or the error that kept them from being read."""

    assistant: str
    listing: Listing[ModelBuild] | None
    error: AutopilotError | None = None


@dataclass
class _Request:
    """One reply in the making: whether it may do I/O, and the stale entries it used."""

    cached_only: bool
    invocation: Invocation | None = None
    refresh: bool = False
    stale: list[Entry[Any]] = field(default_factory=list)


class BuildsCore:
    """Turn `/builds` command texts into Block Kit replies."""

    def __init__(
        self,
        *,
        settings: Settings,
        client: AutopilotClient,
        cache: LookupCache[Any] | None = None,
        clock: Clock = utc_now,
        alerts: AlertCommands | None = None,
        codec: ButtonCodec | None = None,
        metrics: Metrics | None = None,
        shared_cache: SharedCache | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self.metrics = metrics or Metrics()
        if cache is None:
            cache = LookupCache(
                ttl=settings.cache_ttl,
                stale_max=settings.stale_max,
                stale_on=is_outage,
                now=clock,
                metrics=self.metrics,
                shared=shared_cache,
                shared_wait=settings.lookup_timeout,
            )
        self._cache: LookupCache[Any] = cache
        self._clock = clock
        self._alerts = alerts
        self._codec = codec
        self._rendered: LRUCache[tuple[Hashable, datetime], tuple[object, Reply]] = LRUCache(maxsize=RENDERED_REPLIES)

    async def reply(self, text: str, *, cached_only: bool = False, invocation: Invocation | None = None) -> Reply:
        """Return the reply to `text`; with `cached_only`, raise `CacheMiss` rather than do I/O.

        `invocation` names the Slack user and channel; without it, channel commands explain that they need Slack.
        """
        request = _Request(cached_only=cached_only, invocation=invocation)
        return await self._answer(lambda: self._run(parse_command(text), request), request, text=text)

    async def view(self, state: ViewState, *, invocation: Invocation | None = None, refresh: bool = False) -> Reply:
        """Return the reply for a lookup button's view state; `refresh` reads the API again instead of the cache."""
        request = _Request(cached_only=False, invocation=invocation, refresh=refresh)
        if state.build is not None:
            work = partial(self._build_details, BuildDetails(state.assistant, state.build), request, back=state)
        else:
            work = partial(self._list_view, state, request)
        return await self._answer(work, request, text=repr(state))

    async def overview(self, *, max_blocks: int = MAX_BLOCKS, refresh: bool = False) -> Reply:
        """Return the overview of every assistant in scope within `max_blocks` blocks, for the Home tab."""
        request = _Request(cached_only=False, refresh=refresh)
        return await self._answer(partial(self._overview, request, max_blocks=max_blocks), request, text="status")

    async def link_preview(self, assistant: str, build: str | None) -> Reply:
        """Return a compact reply for a pasted assistant or build URL, without buttons."""
        request = _Request(cached_only=False)
        if build is not None:
            work = partial(self._build_details, BuildDetails(assistant, build), request)
        else:
            work = partial(self._preview_builds, assistant, request)
        reply = await self._answer(work, request, text=f"unfurl {assistant} {build}")
        return without_buttons(reply, note="Preview by builds-bot")

    async def _preview_builds(self, assistant: str, request: _Request) -> Reply:
        listing = await self._builds(assistant, request)
        return render_assistant_builds(assistant, listing, status=None, now=self._clock(), command=self._settings.command, limit=PREVIEW_BUILDS)

    async def _answer(self, work: Callable[[], Awaitable[Reply]], request: _Request, *, text: str) -> Reply:
        try:
            reply = await work()
        except CacheMiss:
            raise
        except InputError as error:
            return render_input_error(self._settings.command, str(error))
        except AutopilotError as error:
            logger.warning("core.upstream_failed", extra={"command_text": text[:200], "error": str(error)})
            return render_api_error(error, subject="the model builds")
        except Exception:
            reference = secrets.token_hex(4)
            logger.exception("core.unexpected_error", extra={"reference": reference, "command_text": text[:200]})
            return render_internal_error(reference)

        if not request.stale:
            return reply
        oldest = min(request.stale, key=lambda entry: entry.fetched_at)
        return mark_stale(reply, as_of=oldest.fetched_at, reason=oldest.stale_because, now=self._clock())

    async def _run(self, command: Command, request: _Request) -> Reply:
        if isinstance(command, Help):
            return render_help(self._settings.command)
        if isinstance(command, AssistantBuilds):
            return await self._assistant_builds(command, request)
        if isinstance(command, BuildDetails):
            return await self._build_details(command, request)
        if isinstance(command, FailedBuilds):
            return await self._failed(command, request)
        if isinstance(command, Overview):
            return await self._overview(request)
        return await self._state_command(command, request)

    async def _overview(self, request: _Request, *, max_blocks: int = MAX_BLOCKS) -> Reply:
        now = self._clock()
        try:
            scoped = await self._scoped_builds(request)
        except AutopilotError as error:
            self._log_failure(error)
            return render_api_error(error, subject="the list of assistants")

        rows = [
            overview_row(item.assistant, item.listing.items if item.listing else None, now=now, error=item.error, mute=self._mute_of(item.assistant, request))
            for item in scoped
        ]
        return render_overview(sort_rows(rows), now=now, max_blocks=max_blocks, command=self._settings.command)

    def _mute_of(self, assistant: str, request: _Request) -> Mute | None:
        if self._alerts is None or request.invocation is None:
            return None
        return self._alerts.cached_mute(request.invocation.channel_id, assistant)

    async def _state_command(self, command: StateCommand, request: _Request) -> Reply:
        if request.cached_only:
            # Channel commands read and write the state store, which happens after the acknowledgement.
            raise CacheMiss("channel commands are not served from the cache")

        if self._alerts is None or request.invocation is None:
            return render_input_error(self._settings.command, "Subscriptions and mutes belong to a Slack channel: run this command in Slack.")
        try:
            return await self._alerts.run(command, request.invocation)
        except StateUnavailableError as error:
            logger.error("core.state_unavailable", extra={"channel_id": request.invocation.channel_id, "error": str(error)})
            return render_state_unavailable()

    async def _assistant_builds(self, command: AssistantBuilds, request: _Request) -> Reply:
        return await self._list_view(ViewState(command.assistant, command.status), request)

    async def _list_view(self, state: ViewState, request: _Request) -> Reply:
        command = AssistantBuilds(state.assistant, state.status)
        try:
            listing = await self._builds(command.assistant, request)
        except NotFoundError:
            return render_not_found(kind="assistant", value=command.assistant, assistant=None, command=self._settings.command)
        except AutopilotError as error:
            self._log_failure(error, assistant=command.assistant)
            return render_api_error(error, subject=f"the builds of {name(command.assistant)}")

        return self._with_mute(self._render_list(state, listing), command.assistant, request)

    def _render_list(self, state: ViewState, listing: Listing[ModelBuild]) -> Reply:
        def render(now: datetime) -> Reply:
            return render_assistant_builds(
                state.assistant, listing, status=state.status, now=now, command=self._settings.command, offset=state.offset, codec=self._codec
            )

        return self._rendered_once((state, id(listing)), listing, render)

    def _rendered_once(self, key: Hashable, inputs: object, render: Callable[[datetime], Reply]) -> Reply:
        # Rendering is most of the CPU time of a cache hit. A reply depends on the command, the cached
        # data (in `key` by id) and the clock, so the clock is read to the second and a repeat within
        # that second reuses the reply. Each entry keeps its `inputs` alive, so no id in a key is reused.
        now = self._clock().replace(microsecond=0)
        entry = self._rendered.get((key, now))
        if entry is not None:
            return entry[1]

        reply = render(now)
        self._rendered[(key, now)] = (inputs, reply)
        return reply

    def _with_mute(self, reply: Reply, assistant: str, request: _Request) -> Reply:
        if self._alerts is None or request.invocation is None:
            return reply

        mute = self._mute_of(assistant, request)
        if mute is None:
            return reply
        return with_note(reply, mute_note(mute, now=self._clock()))

    async def _build_details(self, command: BuildDetails, request: _Request, *, back: ViewState | None = None) -> Reply:
        key = ("build", command.assistant, command.build)
        try:
            build = await self._lookup(key, lambda: self._client.fetch_build(command.assistant, command.build), request)
        except NotFoundError:
            return render_not_found(kind="build", value=command.build, assistant=command.assistant, command=self._settings.command)
        except AutopilotError as error:
            self._log_failure(error, assistant=command.assistant, build=command.build)
            return render_api_error(error, subject=f"build {name(command.build)} of {name(command.assistant)}")

        return render_build_details(
            command.assistant, build, now=self._clock(), codec=self._codec, back=back or ViewState(command.assistant)
        )

    async def builds_in_scope(self) -> list[ScopedBuilds]:
        """Return the builds of every assistant in scope, read concurrently, with an error per unreadable one.

        Raises `AutopilotError` when the assistants themselves cannot be listed.
        """
        return await self._scoped_builds(_Request(cached_only=False))

    async def _scoped_builds(self, request: _Request) -> list[ScopedBuilds]:
        assistants = await self._assistants_in_scope(request)
        return list(await asyncio.gather(*(self._scoped(assistant, request) for assistant in assistants)))

    async def _scoped(self, assistant: str, request: _Request) -> ScopedBuilds:
        try:
            return ScopedBuilds(assistant, await self._builds(assistant, request))
        except AutopilotError as error:
            self._log_failure(error, assistant=assistant)
            return ScopedBuilds(assistant, None, error)

    async def _failed(self, command: FailedBuilds, request: _Request) -> Reply:
        try:
            scoped = await self._scoped_builds(request)
        except AutopilotError as error:
            self._log_failure(error)
            return render_api_error(error, subject="the list of assistants")

        def render(now: datetime) -> Reply:
            since = now - command.window
            report = FailedReport(
                window_text=command.window_text,
                since=since,
                assistants_checked=len(scoped),
                groups=[
                    AssistantFailures(item.assistant, failed_within(item.listing.items, since=since), item.listing.complete)
                    for item in scoped
                    if item.listing is not None
                ],
                errors=[(item.assistant, item.error) for item in scoped if item.error is not None],
            )
            return render_failed(report, now=now, command=self._settings.command)

        key = (command, tuple((item.assistant, id(item.listing), id(item.error)) for item in scoped))
        return self._rendered_once(key, scoped, render)

    async def _assistants_in_scope(self, request: _Request) -> list[str]:
        if self._settings.assistants:
            return list(self._settings.assistants)

        listing = await self._lookup(("assistants",), self._client.list_assistants, request)
        return [key for key in (assistant.unique_name or assistant.sid for assistant in listing.items) if key]

    async def _builds(self, assistant: str, request: _Request) -> Listing[ModelBuild]:
        return await self._lookup(("builds", assistant), lambda: self._client.list_builds(assistant), request)

    async def _lookup(self, key: tuple[str, ...], fetch: Callable[[], Any], request: _Request) -> Any:
        if request.cached_only:
            value = self._cache.peek(key)
            self.metrics.cache_lookups.labels(result="hit").inc()
            return value

        entry = await self._cache.get_entry(key, fetch, refresh=request.refresh)
        if entry.stale:
            request.stale.append(entry)
        return entry.value

    def _log_failure(self, error: AutopilotError, **ids: str) -> None:
        logger.warning(
            "core.lookup_failed",
            extra={**ids, "error_type": type(error).__name__, "status": error.status, "code": error.code, "error": str(error)},
        )
