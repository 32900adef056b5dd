"""Plain-text rendering of a `Reply` for a terminal."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.mrkdwn import unescape
from bot.render import Reply

DATE_TOKEN = re.compile(r"<!date\^[^|>]*\|([^>]*)>")
LINK = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")
BARE_LINK = re.compile(r"<(https?://[^|>]+)>")
BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")
CODE = re.compile(r"`([^`\n]+)`")
RULE = "─" * 60
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def to_plain_text(reply: Reply) -> str:
    """Return the reply as readable lines of plain text."""
    lines: list[str] = []
    for block in reply.to_dict()["blocks"]:
        lines.extend(_block_lines(block))
    if not lines:
        lines.append(mrkdwn_to_plain(reply.text))
    return strip_control_characters("\n".join(lines).rstrip()) + "\n"


def strip_control_characters(text: str) -> str:
    """Drop control characters other than newlines, so upstream data cannot drive the terminal."""
    return CONTROL.sub("", text)


def mrkdwn_to_plain(text: str) -> str:
    """Turn Slack mrkdwn into plain text: date fallbacks, `label (url)` links, no markup."""
    text = DATE_TOKEN.sub(r"\1", text)
    text = LINK.sub(r"\2 (\1)", text)
    text = BARE_LINK.sub(r"\1", text)
    text = BOLD.sub(r"\1", text)
    text = CODE.sub(r"\1", text)
    return unescape(text)


def _block_lines(block: Mapping[str, Any]) -> list[str]:
    kind = block.get("type")
    if kind == "header":
        title = block["text"]["text"]
        return ["", title, "═" * min(len(title), 60)]
    if kind == "divider":
        return [RULE]
    if kind == "context":
        texts = [mrkdwn_to_plain(element.get("text", "")) for element in block.get("elements", [])]
        return ["  " + line for text in texts for line in text.splitlines()]
    if kind == "section":
        return _section_lines(block)
    return []


def _section_lines(block: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    if "text" in block:
        lines.extend(mrkdwn_to_plain(block["text"]["text"]).splitlines())
    for field in block.get("fields", []):
        label, _, value = mrkdwn_to_plain(field["text"]).partition("\n")
        lines.append(f"{label + ':':<18} {value}")
    lines.append("")
    return lines
