"""Twilio status callbacks: X-Twilio-Signature checked with twilio-python's algorithm, then an immediate poll."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest
from twilio.request_validator import RequestValidator

from bot.config import load_settings
from bot.server import BotRuntime
from bot.twilio_signature import compute_signature, is_valid_signature
from tests.autopilot_server import AutopilotStandIn, CannedResponse
from tests.conftest import SIGNING_SECRET, bot_environment
from tests.harness import RecordingSleep
from tests.slack_server import SlackStandIn, signed_command

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC_URL = "https://builds.example.com"
CALLBACK_URL = f"{PUBLIC_URL}/twilio/model-builds"
FORM = {"AccountSid": "AC" + "1" * 32, "AssistantSid": "UA" + "2" * 32, "ModelBuildSid": "UG" + "3" * 32, "Status": "failed"}
BUILDS_PATH = "/v1/Assistants/support-bot/ModelBuilds"


def as_lists(form: dict[str, str]) -> dict[str, list[str]]:
    return {key: [value] for key, value in form.items()}


@pytest.mark.parametrize("url", [CALLBACK_URL, f"{CALLBACK_URL}?assistant=support", "http://127.0.0.1:8080/x?a=1&b=2"])
def test_signature_matches_twilio_python(url: str) -> None:
    expected = RequestValidator(AUTH_TOKEN).compute_signature(url, FORM)

    assert compute_signature(url, as_lists(FORM), AUTH_TOKEN) == expected


def test_signature_with_or_without_default_port() -> None:
    signature = RequestValidator(AUTH_TOKEN).compute_signature("https://builds.example.com:443/twilio/model-builds", FORM)

    assert is_valid_signature(CALLBACK_URL, as_lists(FORM), signature, AUTH_TOKEN)
    assert is_valid_signature("https://builds.example.com:443/twilio/model-builds", as_lists(FORM), signature, AUTH_TOKEN)


@pytest.mark.parametrize(
    ("url", "form", "token"),
    [
        ("https://builds.example.com/other", FORM, AUTH_TOKEN),
        (CALLBACK_URL, {**FORM, "Status": "completed"}, AUTH_TOKEN),
        (CALLBACK_URL, FORM, "f" * 32),
    ],
    ids=["other-url", "changed-field", "other-token"],
)
def test_signature_rejects_changes(url: str, form: dict[str, str], token: str) -> None:
    signature = RequestValidator(AUTH_TOKEN).compute_signature(CALLBACK_URL, FORM)

    assert not is_valid_signature(url, as_lists(form), signature, token)


def test_signature_missing_rejected() -> None:
    assert not is_valid_signature(CALLBACK_URL, as_lists(FORM), None, AUTH_TOKEN)


@pytest.fixture
async def api() -> AsyncIterator[AutopilotStandIn]:
    async with AutopilotStandIn() as stand_in:
        stand_in.respond(BUILDS_PATH, CannedResponse(json={"model_builds": [], "meta": {"next_page_url": None}}))
        yield stand_in


@pytest.fixture
async def runtime(api: AutopilotStandIn) -> AsyncIterator[tuple[BotRuntime, httpx.AsyncClient, SlackStandIn]]:
    async with SlackStandIn() as slack:
        environment = bot_environment(
            autopilot_url=api.base_url,
            account_sid="AC" + "1" * 32,
            auth_token=AUTH_TOKEN,
            slack_api_url=slack.api_url,
            BUILDS_PUBLIC_URL=PUBLIC_URL,
            BUILDS_POLL_INTERVAL="3600",
        )
        bot = BotRuntime(load_settings(environment), socket_mode=False, host="127.0.0.1", port=0, retry_sleep=RecordingSleep())
        await bot.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bot.bound_port}") as http:
                body, headers = signed_command("subscribe support-bot", secret=SIGNING_SECRET, response_url=slack.response_url())
                await http.post("/slack/events", content=body, headers=headers)
                await slack.next_response()
                await api.wait_for_requests(1)
                yield bot, http, slack
        finally:
            await bot.stop()


async def post_callback(http: httpx.AsyncClient, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return await http.post("/twilio/model-builds", content=urlencode(FORM), headers=headers)


async def test_callback_bad_signature_rejected_without_poll(
    runtime: tuple[BotRuntime, httpx.AsyncClient, SlackStandIn], api: AutopilotStandIn
) -> None:
    bot, http, _ = runtime
    assert bot.alerts is not None
    triggers = bot.alerts.poller.triggers

    forged = await post_callback(http, compute_signature(CALLBACK_URL, as_lists(FORM), "f" * 32))
    unsigned = await post_callback(http, None)

    assert forged.status_code == 403
    assert unsigned.status_code == 403
    assert bot.alerts.poller.triggers == triggers
    assert len(api.requests_to(BUILDS_PATH)) == 1


async def test_callback_valid_signature_polls_at_once(
    runtime: tuple[BotRuntime, httpx.AsyncClient, SlackStandIn], api: AutopilotStandIn
) -> None:
    bot, http, _ = runtime
    assert bot.alerts is not None
    triggers = bot.alerts.poller.triggers

    response = await post_callback(http, RequestValidator(AUTH_TOKEN).compute_signature(CALLBACK_URL, FORM))
    await api.wait_for_requests(2)

    assert response.status_code == 204
    assert bot.alerts.poller.triggers == triggers + 1
    assert len(api.requests_to(BUILDS_PATH)) == 2
