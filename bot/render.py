"""Block Kit replies, built with slack-sdk's block models.

Every function here is pure: data in, `Reply` out. The models check Slack's
limits when a reply is serialized. The functions stay inside those limits
whatever the data: at most 50 blocks, 3000 characters of section text, 10
fields per section and 150 characters per header. Every string from Twilio or
from a user is escaped before it becomes mrkdwn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, DividerBlock, HeaderBlock, SectionBlock

from bot.autopilot import Listing
from bot.blocks import MAX_BLOCKS, MAX_FALLBACK_TEXT, context, fields, fit, header, section
from bot.errors import (
    ApiConnectionError,
    ApiTimeoutError,
    AuthenticationError,
    AutopilotError,
    InvalidResponseError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
)
from bot.formatting import PLACEHOLDER, error_link, humanize_duration, name, slack_date, status_label, trend_text
from bot.models import ModelBuild
from bot.mrkdwn import escape, truncate
from bot import views
from bot.stats import TREND_SAMPLE, summarize, trend
from bot.views import ButtonCodec, ViewState

DEFAULT_LIMIT = 10
DEFAULT_COMMAND = "/builds"
BUILDS_PER_ASSISTANT = 5


@dataclass(frozen=True, slots=True)
class Reply:
    """A Slack message: a plain fallback `text` and its Block Kit `blocks`."""

    text: str
    blocks: Sequence[Block] = field(default_factory=tuple)
    ok: bool = True
    _block_dicts: list[dict[str, Any]] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.blocks) > MAX_BLOCKS:
            raise ValueError(f"a reply may hold at most {MAX_BLOCKS} blocks, got {len(self.blocks)}")

    def to_dict(self) -> dict[str, Any]:
        """Return the message payload; slack-sdk validates each block the first time.

        The blocks are serialized once per reply, because a reply reused for repeated lookups
        is sent many times. The block dicts are shared between calls, so callers must not change them.
        """
        block_dicts = self._block_dicts
        if block_dicts is None:
            block_dicts = [block.to_dict() for block in self.blocks]
            object.__setattr__(self, "_block_dicts", block_dicts)
        return {"text": self.text, "blocks": list(block_dicts)}


@dataclass(frozen=True, slots=True)
class AssistantFailures:
    """The failed builds of one assistant within a window, newest first."""

    assistant: str
    builds: Sequence[ModelBuild]
    complete: bool = True


@dataclass(frozen=True, slots=True)
class FailedReport:
    """Failed builds across the assistants in scope, and the assistants that could not be read."""

    window_text: str
    since: datetime
    assistants_checked: int
    groups: Sequence[AssistantFailures]
    errors: Sequence[tuple[str, AutopilotError]] = ()


def render_help(command: str) -> Reply:
    """Render usage with examples for `command` (such as `/builds`)."""
    return Reply(
        text=f"Usage: {command} <assistant> | {command} <assistant> <status> | {command} <assistant> <build> | {command} failed [window]",
        blocks=[header("Model builds: usage"), section(usage_text(command))],
    )


def usage_text(command: str) -> str:
    """Return the usage lines, in mrkdwn, for `command`."""
    return "\n".join(
        [
            f"`{command} <assistant>`: the latest builds of an assistant, by SID (UA…) or unique name. Example: `{command} support-bot`",
            f"`{command} <assistant> <status>`: only builds with that status: enqueued, building, completed, failed, canceled. "
            f"Aliases: failures, running, queued, ok, succeeded, cancelled. Example: `{command} support-bot failed`",
            f"`{command} <assistant> <build>`: one build, by SID (UG…) or unique name. Example: `{command} support-bot v42`",
            f"`{command} failed [window]`: failed builds across all assistants in scope, default 24h. "
            f"Windows: 30m, 6h, 7d, up to 90d. Example: `{command} failed 6h`",
            f"`{command} help`: this message",
        ]
    )


def render_input_error(command: str, message: str) -> Reply:
    """Render a message about input the bot could not use, followed by the usage."""
    return Reply(
        text=truncate(f"⚠️ {escape(message)}", MAX_FALLBACK_TEXT),
        blocks=[section(f"⚠️ {escape(message)}"), context(usage_text(command))],
        ok=False,
    )


def render_assistant_builds(
    assistant: str,
    listing: Listing[ModelBuild],
    *,
    status: str | None,
    now: datetime,
    command: str = DEFAULT_COMMAND,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    codec: ButtonCodec | None = None,
) -> Reply:
    """Render a page of an assistant's builds under a summary of its recent history.

    With a `codec`, each build gets a Details button and the page gets paging, filter, refresh and share buttons.
    """
    builds = listing.items
    shown_pool = [build for build in builds if status is None or build.status == status]
    shown = shown_pool[offset : offset + limit]
    title = f"Builds of {assistant}" + (f" · {status}" if status else "")
    state = ViewState(assistant, status, offset)

    blocks: list[Block] = [header(title), _summary_fields(builds, now=now), DividerBlock()]
    blocks.extend(_build_section(build, state, codec, now=now) for build in shown)
    if not shown:
        blocks.append(section(_no_builds_text(assistant, status, len(builds))))
    footer = _list_footer(command, assistant, offset, len(shown), len(shown_pool), listing.complete)
    if footer:
        blocks.append(context(footer))
    if codec is not None:
        blocks.append(_list_buttons(codec, state, total=len(shown_pool), limit=limit))

    return Reply(text=_assistant_fallback(assistant, builds, status, len(shown_pool)), blocks=blocks)


def render_build_details(
    assistant: str, build: ModelBuild, *, now: datetime, codec: ButtonCodec | None = None, back: ViewState | None = None
) -> Reply:
    """Render every field of one build; with a `codec`, add Back, Refresh and Share buttons."""
    facts = [
        f"*Status*\n{status_label(build.status)}",
        f"*Assistant*\n{name(assistant)}",
        f"*Build SID*\n{name(build.sid)}",
        f"*Unique name*\n{name(build.unique_name)}",
        f"*Created*\n{slack_date(build.date_created, now=now)}",
        f"*Updated*\n{slack_date(build.date_updated, now=now)}",
        f"*Duration*\n{humanize_duration(build.build_duration)}",
        f"*Error*\n{error_link(build.error_code)}",
    ]
    # Headers are plain text, so no upstream string goes into one: the build's names stay in mrkdwn fields.
    title = f"Build details · {assistant}"
    fallback = f"Build {escape(build.name or PLACEHOLDER)} of {escape(assistant)}: {build.status or 'unknown'}"

    blocks: list[Block] = [header(title), fields(facts)]
    if codec is not None:
        blocks.append(_details_buttons(codec, assistant, build, back or ViewState(assistant)))
    return Reply(text=truncate(fallback, MAX_FALLBACK_TEXT), blocks=blocks)


def without_buttons(reply: Reply, *, note: str) -> Reply:
    """Return `reply` without its buttons and with `note` under its header, for posting to a channel."""
    blocks = [_strip_accessory(block) for block in reply.blocks if not isinstance(block, ActionsBlock)]
    return with_note(Reply(text=reply.text, blocks=blocks, ok=reply.ok), note)


def _strip_accessory(block: Block) -> Block:
    if isinstance(block, SectionBlock) and block.accessory is not None:
        return SectionBlock(text=block.text, fields=block.fields)
    return block


def _build_section(build: ModelBuild, state: ViewState, codec: ButtonCodec | None, *, now: datetime) -> SectionBlock:
    block = section(_build_line(build, now=now))
    if codec is None or build.sid is None:
        return block
    value = codec.encode(ViewState(state.assistant, state.status, state.offset, build=build.sid))
    return SectionBlock(text=block.text, accessory=ButtonElement(text="Details", action_id=views.DETAILS, value=value))


def _list_buttons(codec: ButtonCodec, state: ViewState, *, total: int, limit: int) -> ActionsBlock:
    buttons: list[ButtonElement] = []
    if state.offset > 0:
        buttons.append(_button(codec, "Newer", views.NEWER, ViewState(state.assistant, state.status, max(state.offset - limit, 0))))
    if state.offset + limit < total:
        buttons.append(_button(codec, "Older", views.OLDER, ViewState(state.assistant, state.status, state.offset + limit)))
    if state.status != "failed":
        buttons.append(_button(codec, "Failed only", views.FAILED_ONLY, ViewState(state.assistant, "failed")))
    if state.status is not None:
        buttons.append(_button(codec, "All builds", views.ALL_BUILDS, ViewState(state.assistant)))
    buttons.append(_button(codec, "Refresh", views.REFRESH, state))
    buttons.append(_button(codec, "Share in channel", views.SHARE, state))
    return ActionsBlock(elements=buttons)


def _details_buttons(codec: ButtonCodec, assistant: str, build: ModelBuild, back: ViewState) -> ActionsBlock:
    current = ViewState(assistant, back.status, back.offset, build=build.sid)
    return ActionsBlock(
        elements=[
            _button(codec, "Back to builds", views.BACK, ViewState(back.assistant, back.status, back.offset)),
            _button(codec, "Refresh", views.REFRESH, current),
            _button(codec, "Share in channel", views.SHARE, current),
        ]
    )


def _button(codec: ButtonCodec, text: str, action_id: str, state: ViewState) -> ButtonElement:
    return ButtonElement(text=text, action_id=action_id, value=codec.encode(state))


def render_failed(report: FailedReport, *, now: datetime, command: str = DEFAULT_COMMAND) -> Reply:
    """Render failed builds grouped by assistant, the most recently failed assistant first."""
    groups = sorted(
        (group for group in report.groups if group.builds),
        key=lambda group: group.builds[0].date_created or datetime.min.replace(tzinfo=now.tzinfo),
        reverse=True,
    )
    total = sum(len(group.builds) for group in groups)
    footers = _failed_footers(report)
    # Room for the header, the summary, the footers, a "Showing N of M" line and a stale-data note.
    room = MAX_BLOCKS - 2 - len(footers) - 2
    visible = groups[:room]

    blocks: list[Block] = [header(f"Failed builds · last {report.window_text}"), section(_failed_summary(report, total, len(groups), now=now))]
    blocks.extend(section(_group_text(group, now=now, command=command)) for group in visible)
    if len(visible) < len(groups):
        footers.append(f"Showing {len(visible)} of {len(groups)} assistants with failures.")
    blocks.extend(context(text) for text in footers)

    fallback = f"{total} failed builds in {len(groups)} of {report.assistants_checked} assistants in the last {report.window_text}"
    return Reply(text=fallback, blocks=blocks)


def render_api_error(error: AutopilotError, *, subject: str) -> Reply:
    """Render a plain explanation of a failed API request about `subject` (already mrkdwn)."""
    text = f"⚠️ Could not read {subject}: {explain(error)}"
    details = _error_details(error)
    blocks: list[Block] = [section(text)]
    if details:
        blocks.append(context(details))
    return Reply(text=truncate(text, MAX_FALLBACK_TEXT), blocks=blocks, ok=False)


def render_not_found(*, kind: str, value: str, assistant: str | None, command: str) -> Reply:
    """Render the reply for an assistant or build that the API reports as not found."""
    if kind == "build":
        text = (
            f"⚠️ No build {name(value)} found in assistant {name(assistant)}. "
            f"`{command} {escape(assistant or '')}` lists its builds; a status filter is one of enqueued, building, completed, failed, canceled."
        )
    else:
        text = f"⚠️ No assistant {name(value)} found. Check its SID (UA…) or unique name; `{command} failed` reads every assistant in scope."
    return Reply(text=text, blocks=[section(text)], ok=False)


def render_state_unavailable() -> Reply:
    """Render the reply when subscriptions and mutes cannot be read or changed because the state store is down."""
    text = "⚠️ Alert settings are unavailable right now because the bot's state store does not answer. Lookups still work; try this again in a minute."
    return Reply(text=text, blocks=[section(text)], ok=False)


def render_internal_error(reference: str) -> Reply:
    """Render the reply for a bug in the bot, pointing at the log entry by `reference`."""
    text = f"⚠️ Something went wrong inside builds-bot. The error is logged with reference `{reference}`; please report it to the bot's maintainers."
    return Reply(text=text, blocks=[section(text)], ok=False)


def mark_stale(reply: Reply, *, as_of: datetime, reason: Exception | None, now: datetime) -> Reply:
    """Return `reply` with a note that the API failed and the data is the last good copy from `as_of`."""
    detail = _outage_detail(reason)
    note = (
        f"⚠️ Twilio API unavailable ({detail}): showing data as of {slack_date(as_of, now=now)}, "
        f"{slack_date(as_of, now=now, relative=True)}. Newer builds may be missing."
    )
    as_of_text = as_of.strftime("%Y-%m-%d %H:%M UTC")
    return with_note(reply, note, fallback_prefix=f"⚠️ Twilio API unavailable, data as of {as_of_text}.")


def with_note(reply: Reply, note: str, *, fallback_prefix: str = "") -> Reply:
    """Return `reply` with a context line `note` (mrkdwn) under its header."""
    blocks = list(reply.blocks)
    position = 1 if blocks and isinstance(blocks[0], HeaderBlock) else 0
    blocks.insert(position, context(note))

    text = f"{fallback_prefix} {reply.text}" if fallback_prefix else reply.text
    return Reply(text=truncate(text, MAX_FALLBACK_TEXT), blocks=blocks, ok=reply.ok)


def _outage_detail(error: Exception | None) -> str:
    if isinstance(error, RateLimitedError):
        return "rate limited"
    if isinstance(error, ApiTimeoutError):
        return "timed out"
    if isinstance(error, ApiConnectionError):
        return "connection failed"
    if isinstance(error, AutopilotError) and error.status is not None:
        return f"HTTP {error.status}"
    return "request failed"


def explain(error: AutopilotError) -> str:
    """Return one plain sentence saying what failed and what to do."""
    if isinstance(error, AuthenticationError):
        return (
            "the Autopilot API rejected the bot's credentials. "
            "An admin should check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and TWILIO_API_SECRET)."
        )
    if isinstance(error, RateLimitedError):
        wait = f"{error.retry_after:.0f} s" if error.retry_after is not None else "a minute"
        return f"the Autopilot API is rate limiting requests. Try again in {wait}."
    if isinstance(error, ServerError):
        return f"the Autopilot API failed with HTTP {error.status}. Try again in a minute."
    if isinstance(error, ApiTimeoutError):
        return "the Autopilot API timed out. Try again in a minute."
    if isinstance(error, ApiConnectionError):
        return "the Autopilot API could not be reached. Check AUTOPILOT_BASE_URL and the network, then try again."
    if isinstance(error, InvalidResponseError):
        return "the Autopilot API sent a response that is not the documented JSON. Check that AUTOPILOT_BASE_URL names an Autopilot-compatible API."
    if isinstance(error, RequestRejectedError):
        return f"the Autopilot API rejected the request with HTTP {error.status}."
    return f"{error.summary}."


def _error_details(error: AutopilotError) -> str:
    parts = []
    if error.code is not None:
        parts.append(f"Twilio error {error_link(error.code)}")
    if error.status is not None:
        parts.append(f"HTTP {error.status}")
    return " · ".join(parts)


def _summary_fields(builds: Sequence[ModelBuild], *, now: datetime) -> SectionBlock:
    summary = summarize(builds, now=now)
    latest = summary.latest
    last_success = summary.last_success
    median = humanize_duration(summary.median_duration)

    return fields(
        [
            "*Latest build*\n"
            + (f"{status_label(latest.status)} {slack_date(latest.date_created, now=now, relative=True)}" if latest else "none yet"),
            "*Last successful*\n"
            + (f"{slack_date(last_success.date_created, now=now)} ({name(last_success.name, limit=40)})" if last_success else "none"),
            f"*Failed in 24 h*\n{summary.failed_recently}",
            f"*Median duration*\n{median}" + (f" (last {summary.median_sample})" if summary.median_sample else ""),
            f"*Trend, last {TREND_SAMPLE} builds*\n{trend_text(trend(builds))}",
        ]
    )


def _build_line(build: ModelBuild, *, now: datetime) -> str:
    facts = [slack_date(build.date_created, now=now), humanize_duration(build.build_duration)]
    if build.error_code is not None:
        facts.append(f"error {error_link(build.error_code)}")
    return f"{status_label(build.status)}  *{name(build.name)}*\n" + " · ".join(facts)


def _no_builds_text(assistant: str, status: str | None, total: int) -> str:
    if status is None:
        return f"No builds yet for {name(assistant)}."
    return f"No builds with status {escape(status)} among the {_count(total, 'build')} of {name(assistant)}."


def _list_footer(command: str, assistant: str, offset: int, shown: int, available: int, complete: bool) -> str:
    if offset == 0:
        parts = [f"Showing {shown} of {available} builds."] if shown else []
    else:
        parts = [f"Showing {offset + 1}–{offset + shown} of {available} builds."] if shown else []
    if shown:
        parts.append(f"Details of one build: `{command} {escape(assistant)} <build>`.")
    if not complete:
        parts.append("⚠️ Paging stopped early, so older builds may be missing.")
    return " ".join(parts)


def _assistant_fallback(assistant: str, builds: Sequence[ModelBuild], status: str | None, matching: int) -> str:
    if not builds:
        return f"No builds yet for {escape(assistant)}"

    latest = builds[0]
    text = f"{escape(assistant)}: latest build {escape(latest.name or PLACEHOLDER)}, {escape(latest.status or 'status unknown')}"
    if status:
        text += f"; {matching} {escape(status)} builds"
    return truncate(text, MAX_FALLBACK_TEXT)


def _failed_summary(report: FailedReport, total: int, failing: int, *, now: datetime) -> str:
    since = slack_date(report.since, now=now)
    if total == 0:
        return f"No failed builds since {since} across {report.assistants_checked} assistants."
    return f"*{total}* failed builds in *{failing}* of {report.assistants_checked} assistants since {since}."


def _group_text(group: AssistantFailures, *, now: datetime, command: str) -> str:
    lines = [f"*{name(group.assistant)}*: {len(group.builds)} failed"]
    for build in group.builds[:BUILDS_PER_ASSISTANT]:
        facts = [slack_date(build.date_created, now=now), humanize_duration(build.build_duration)]
        if build.error_code is not None:
            facts.append(f"error {error_link(build.error_code)}")
        lines.append(f"❌ {name(build.name)} · " + " · ".join(facts))

    hidden = len(group.builds) - BUILDS_PER_ASSISTANT
    if hidden > 0:
        lines.append(f"…and {hidden} more: `{command} {escape(group.assistant)} failed`")
    if not group.complete:
        lines.append("⚠️ Paging stopped early, so older builds may be missing.")
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _failed_footers(report: FailedReport) -> list[str]:
    if not report.errors:
        return []

    shown = [f"{name(assistant, limit=40)} ({error.summary})" for assistant, error in report.errors[:10]]
    more = len(report.errors) - len(shown)
    text = f"⚠️ Could not read {_count(len(report.errors), 'assistant')}: " + ", ".join(shown)
    return [text + (f", and {more} more." if more > 0 else ".")]
