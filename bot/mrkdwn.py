"""Escaping between plain strings and Slack's mrkdwn text format."""

from __future__ import annotations

ELLIPSIS = "…"


def escape(text: str) -> str:
    """Escape `&`, `<` and `>` so Slack shows `text` as written and parses no links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """Undo the escaping Slack applies to the text of slash commands and messages."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def truncate(text: str, limit: int) -> str:
    """Return `text` cut to at most `limit` characters, marking a cut with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + ELLIPSIS


def escape_shortened(text: str, limit: int) -> str:
    """Shorten a raw upstream string to `limit` characters, then escape it.

    Shortening first means a cut can never split an entity such as `&amp;`.
    """
    return escape(truncate(text, limit))
