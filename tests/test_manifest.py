"""The Slack app manifest is valid by Slack's own schema and requests no more than the bot uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bot.config import DEFAULT_COMMAND
from tests.conftest import REPO_ROOT, shared_file

MANIFEST = REPO_ROOT / "manifest.yml"


def load_manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


def load_schema() -> dict[str, Any]:
    return json.loads(Path(shared_file("slack", "manifest.schema.1.0.0.json")).read_text(encoding="utf-8"))


def test_manifest_matches_slack_schema() -> None:
    jsonschema.Draft7Validator(load_schema()).validate(load_manifest())


def test_manifest_schema_rejects_broken_copy() -> None:
    """The validation above is real: a command without its leading slash fails it."""
    manifest = load_manifest()
    manifest["features"]["slash_commands"][0]["command"] = "builds"

    with pytest.raises(jsonschema.ValidationError, match="does not match"):
        jsonschema.Draft7Validator(load_schema()).validate(manifest)


def test_manifest_declares_default_command() -> None:
    commands = load_manifest()["features"]["slash_commands"]

    assert [command["command"] for command in commands] == [DEFAULT_COMMAND]
    assert commands[0]["description"]
    assert commands[0]["usage_hint"]


def test_manifest_requests_only_needed_scopes() -> None:
    oauth = load_manifest()["oauth_config"]

    # commands for /builds; chat:write for alerts, digests and the reply fallback;
    # links:read and links:write for link previews (link_shared and chat.unfurl).
    assert sorted(oauth["scopes"]["bot"]) == ["chat:write", "commands", "links:read", "links:write"]
    assert "user" not in oauth["scopes"]


def test_manifest_enables_socket_mode_and_interactivity() -> None:
    settings = load_manifest()["settings"]

    assert settings["socket_mode_enabled"] is True
    assert settings["interactivity"]["is_enabled"] is True


def test_manifest_declares_home_and_unfurls() -> None:
    manifest = load_manifest()

    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["features"]["unfurl_domains"] == ["autopilot.twilio.com"]
    assert sorted(manifest["settings"]["event_subscriptions"]["bot_events"]) == ["app_home_opened", "link_shared"]
