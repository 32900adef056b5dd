"""Block Kit building blocks that stay within Slack's limits whatever text they get."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import ContextBlock, HeaderBlock, MarkdownTextObject, PlainTextObject, SectionBlock

from bot.mrkdwn import truncate

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_FALLBACK_TEXT = 3000
NO_TEXT = "(no text)"


def header(text: str) -> HeaderBlock:
    """Return a header block, its plain text cut to Slack's 150 characters."""
    return HeaderBlock(text=PlainTextObject(text=truncate(text, MAX_HEADER_TEXT) or NO_TEXT, emoji=True))


def section(text: str) -> SectionBlock:
    """Return a mrkdwn section block, its text cut to Slack's 3000 characters."""
    return SectionBlock(text=MarkdownTextObject(text=fit(text, MAX_SECTION_TEXT) or NO_TEXT))


def fields(texts: Sequence[str]) -> SectionBlock:
    """Return a section of at most 10 mrkdwn fields of at most 2000 characters each."""
    return SectionBlock(fields=[MarkdownTextObject(text=fit(text, MAX_FIELD_TEXT) or NO_TEXT) for text in texts[:10]])


def context(text: str) -> ContextBlock:
    """Return a context block with one mrkdwn element."""
    return ContextBlock(elements=[MarkdownTextObject(text=fit(text, MAX_SECTION_TEXT) or NO_TEXT)])


def fit(text: str, limit: int) -> str:
    """Cut mrkdwn `text` to `limit` characters at a line break, so no link or entity is split."""
    if len(text) <= limit:
        return text

    cut = text.rfind("\n", 0, limit - 2)
    if cut <= 0:
        return truncate(text, limit)
    return text[:cut] + "\n…"
