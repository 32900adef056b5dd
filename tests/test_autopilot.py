"""Tests for the Autopilot client against real loopback stand-in servers."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import httpx
import pytest

from bot import autopilot
from bot.autopilot import MAX_CONNECTIONS, MAX_PAGE_SIZE, AutopilotClient
from bot.config import Settings, load_settings
from bot.errors import (
    ApiConnectionError,
    ApiTimeoutError,
    AuthenticationError,
    AutopilotError,
    InvalidIdentifierError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
)
from tests.autopilot_server import HOST, CannedResponse, AutopilotStandIn, page_token, twilio_error

ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "test-auth-token"
API_KEY = "SK" + "b" * 32
API_SECRET = "test-api-secret"
ASSISTANT = "support"
ASSISTANT_SID = "UA" + "c" * 32
BUILDS_PATH = f"/v1/Assistants/{ASSISTANT}/ModelBuilds"
ASSISTANTS_PATH = "/v1/Assistants"
PATH_CHANGING_IDENTIFIERS = ["../x", "a%2Fb", "a?b", "a#b", "a b", "..", "a/b", "."]
# Seconds allowed for a request that must fail fast: far above the time it takes, far below the test timeout.
FAST_FAILURE_SECONDS = 5.0


def make_settings(base_url: str, **environ: str) -> Settings:
    """Return settings that point the client at `base_url` with test credentials and one attempt per request.

    Retries have their own tests; here each error must surface from the first response.
    """
    return load_settings(
        {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "AUTOPILOT_BASE_URL": base_url,
            "BUILDS_RETRY_ATTEMPTS": "1",
            **environ,
        }
    )


def build_sid(number: int) -> str:
    return f"UG{number:032x}"


def build_json(number: int, *, day: int, updated_hour: int = 0, status: str = "completed") -> dict[str, Any]:
    """Return a model build resource created on December `day`, 2026."""
    return {
        "sid": build_sid(number),
        "unique_name": f"build-{number}",
        "status": status,
        "assistant_sid": ASSISTANT_SID,
        "account_sid": ACCOUNT_SID,
        "date_created": f"2026-12-{day:02d}T10:00:00Z",
        "date_updated": f"2026-12-{day:02d}T{10 + updated_hour:02d}:30:00Z",
        "build_duration": 40 + number,
        "error_code": None,
        "url": f"https://autopilot.twilio.com/v1/Assistants/{ASSISTANT_SID}/ModelBuilds/{build_sid(number)}",
    }


def list_body(key: str, items: list[Any], next_page_url: str | None) -> dict[str, Any]:
    return {key: items, "meta": {"key": key, "page_size": len(items), "next_page_url": next_page_url}}


def basic_authorization(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def unused_port() -> int:
    """Return a loopback port that was bound and released, so nothing listens on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class ConnectionCounter:
    """A TCP listener on 127.0.0.1 that counts accepted connections and closes each at once."""

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ConnectionCounter:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


@pytest.fixture
async def stand_in() -> AsyncIterator[AutopilotStandIn]:
    async with AutopilotStandIn() as server:
        yield server


@pytest.fixture
async def other_server() -> AsyncIterator[AutopilotStandIn]:
    """A second stand-in on another port, for origins the client must never contact."""
    async with AutopilotStandIn() as server:
        yield server


def warnings_logged(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "bot.autopilot" and record.getMessage() == event and record.levelno == logging.WARNING
    ]


# Paging


async def test_list_builds_three_pages(stand_in: AutopilotStandIn) -> None:
    builds = [build_json(number, day=number) for number in range(1, 8)]
    stand_in.serve_pages(BUILDS_PATH, "model_builds", builds, page_size=3)

    async with AutopilotClient(make_settings(stand_in.base_url), page_size=3) as client:
        listing = await client.list_builds(ASSISTANT)

    assert len(stand_in.requests) == 3
    assert listing.complete is True
    assert [build.sid for build in listing.items] == [build_sid(number) for number in range(7, 0, -1)]


async def test_list_builds_first_request_has_page_size(stand_in: AutopilotStandIn) -> None:
    stand_in.serve_pages(BUILDS_PATH, "model_builds", [build_json(1, day=1)], page_size=3)

    async with AutopilotClient(make_settings(stand_in.base_url), page_size=3) as client:
        await client.list_builds(ASSISTANT)

    assert stand_in.requests[0].method == "GET"
    assert stand_in.requests[0].raw_path == f"{BUILDS_PATH}?PageSize=3"


async def test_list_builds_next_url_sent_unchanged(stand_in: AutopilotStandIn) -> None:
    """Later pages are requested at the next_page_url bytes, with no escape decoded or added."""
    builds = [build_json(number, day=number) for number in range(1, 8)]
    next_urls = stand_in.serve_pages(BUILDS_PATH, "model_builds", builds, page_size=3)

    async with AutopilotClient(make_settings(stand_in.base_url), page_size=3) as client:
        await client.list_builds(ASSISTANT)

    sent = [stand_in.base_url + request.raw_path for request in stand_in.requests[1:]]
    assert sent == next_urls
    assert stand_in.requests[1].raw_path.endswith("&PageToken=PA%2B1x%3D%3D")
    assert stand_in.requests[2].raw_path.endswith("&PageToken=PA%2B2x%3D%3D")


@pytest.mark.parametrize(
    ("page_size", "sent_page_size"),
    [(-5, 1), (0, 1), (1, 1), (50, 50), (MAX_PAGE_SIZE, MAX_PAGE_SIZE), (MAX_PAGE_SIZE + 1, MAX_PAGE_SIZE), (10**9, MAX_PAGE_SIZE)],
)
async def test_list_builds_page_size_within_twilio_range(
    stand_in: AutopilotStandIn, page_size: int, sent_page_size: int
) -> None:
    stand_in.respond_json(BUILDS_PATH, list_body("model_builds", [], None))

    async with AutopilotClient(make_settings(stand_in.base_url), page_size=page_size) as client:
        await client.list_builds(ASSISTANT)

    assert stand_in.requests[0].query == f"PageSize={sent_page_size}"


async def test_list_builds_default_page_size_is_maximum(stand_in: AutopilotStandIn) -> None:
    stand_in.respond_json(BUILDS_PATH, list_body("model_builds", [], None))

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        await client.list_builds(ASSISTANT)

    assert stand_in.requests[0].query == f"PageSize={MAX_PAGE_SIZE}"


async def test_list_builds_null_next_url_stops(stand_in: AutopilotStandIn) -> None:
    stand_in.respond_json(BUILDS_PATH, list_body("model_builds", [build_json(1, day=1)], None))

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        listing = await client.list_builds(ASSISTANT)

    assert len(stand_in.requests) == 1
    assert listing.complete is True
    assert [build.sid for build in listing.items] == [build_sid(1)]


async def test_list_builds_repeated_next_url_stops(
    stand_in: AutopilotStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.autopilot")
    second_page = "/v1/Assistants/support/ModelBuilds/page2"
    stand_in.respond_json(BUILDS_PATH, list_body("model_builds", [build_json(1, day=1)], stand_in.base_url + second_page))
    stand_in.respond_json(second_page, list_body("model_builds", [build_json(2, day=2)], stand_in.base_url + second_page))

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        listing = await client.list_builds(ASSISTANT)

    assert len(stand_in.requests) == 2
    assert listing.complete is False
    assert [build.sid for build in listing.items] == [build_sid(2), build_sid(1)]
    assert len(warnings_logged(caplog, "autopilot.repeated_next_page_url")) == 1


async def test_list_builds_first_url_repeated_stops(
    stand_in: AutopilotStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    """A next_page_url that is the URL just requested, PageSize included, is a repeat."""
    caplog.set_level(logging.WARNING, logger="bot.autopilot")
    first_url = f"{stand_in.base_url}{BUILDS_PATH}?PageSize=3"
    stand_in.respond_json(BUILDS_PATH, list_body("model_builds", [build_json(1, day=1)], first_url))

    async with AutopilotClient(make_settings(stand_in.base_url), page_size=3) as client:
        listing = await client.list_builds(ASSISTANT)

    assert len(stand_in.requests) == 1
    assert listing.complete is False
    assert len(warnings_logged(caplog, "autopilot.repeated_next_page_url")) == 1


async def test_list_builds_page_cap_incomplete(stand_in: AutopilotStandIn, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.autopilot")
    builds = [build_json(number, day=number) for number in range(1, 8)]
    stand_in.serve_pages(BUILDS_PATH, "model_builds", builds, page_size=3)

    async with AutopilotClient(make_settings(stand_in.base_url), page_size=3, max_pages=2) as client:
        listing = await client.list_builds(ASSISTANT)

    assert len(stand_in.requests) == 2
    assert listing.complete is False
    assert len(listing.items) == 6
    assert len(warnings_logged(caplog, "autopilot.page_cap_reached")) == 1


async def test_list_builds_foreign_port_not_contacted(
    stand_in: AutopilotStandIn, other_server: AutopilotStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.autopilot")
    foreign_url = f"{other_server.base_url}{BUILDS_PATH}?PageSize=3&Page=1&PageToken={page_token(1)}"
    stand_in.respond_json(BUILDS_PATH, list_body("model_builds", [build_json(1, day=1)], foreign_url))
    other_server.respond_json(BUILDS_PATH, list_body("model_builds", [build_json(2, day=2)], None))

    async with AutopilotClient(make_settings(stand_in.base_url), page_size=3) as client:
        listing = await client.list_builds(ASSISTANT)

    assert other_server.requests == []
    assert len(stand_in.requests) == 1
    assert listing.complete is False
    assert [build.sid for build in listing.items] == [build_sid(1)]
    assert len(warnings_logged(caplog, "autopilot.foreign_next_page_url")) == 1


async def test_list_builds_foreign_scheme_not_contacted(stand_in: AutopilotStandIn) -> None:
    """An https next_page_url is another origin even on a loopback host, so nothing may connect to it."""
    async with ConnectionCounter() as counter:
        foreign_url = f"https://{HOST}:{counter.port}{BUILDS_PATH}?Page=1&PageToken={page_token(1)}"
        stand_in.respond_json(BUILDS_PATH, list_body("model_builds", [build_json(1, day=1)], foreign_url))

        async with AutopilotClient(make_settings(stand_in.base_url)) as client:
            listing = await client.list_builds(ASSISTANT)

    assert counter.connections == 0
    assert len(stand_in.requests) == 1
    assert listing.complete is False


async def test_list_builds_https_same_port_not_followed(stand_in: AutopilotStandIn) -> None:
    """The configured host and port under https is still another origin."""
    foreign_url = f"https://{HOST}:{stand_in.port}{BUILDS_PATH}?Page=1&PageToken={page_token(1)}"
    stand_in.respond_json(BUILDS_PATH, list_body("model_builds", [build_json(1, day=1)], foreign_url))

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        listing = await client.list_builds(ASSISTANT)

    assert len(stand_in.requests) == 1
    assert listing.complete is False


async def test_list_builds_relative_next_url_not_followed(stand_in: AutopilotStandIn) -> None:
    relative_url = f"{BUILDS_PATH}?Page=1&PageToken={page_token(1)}"
    stand_in.respond_json(BUILDS_PATH, list_body("model_builds", [build_json(1, day=1)], relative_url))

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        listing = await client.list_builds(ASSISTANT)

    assert len(stand_in.requests) == 1
    assert listing.complete is False


@pytest.mark.parametrize("status", [301, 302, 307])
async def test_redirect_not_followed(stand_in: AutopilotStandIn, other_server: AutopilotStandIn, status: int) -> None:
    stand_in.respond(BUILDS_PATH, CannedResponse(status=status, headers={"Location": other_server.base_url + BUILDS_PATH}))
    other_server.respond_json(BUILDS_PATH, list_body("model_builds", [], None))

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        with pytest.raises(InvalidResponseError, match=rf"HTTP {status} from .*redirect to .* not followed") as caught:
            await client.list_builds(ASSISTANT)

    assert other_server.requests == []
    assert len(stand_in.requests) == 1
    assert caught.value.status == status


# Credentials


async def test_credentials_account_sid_and_auth_token(stand_in: AutopilotStandIn) -> None:
    builds = [build_json(number, day=number) for number in range(1, 5)]
    stand_in.serve_pages(BUILDS_PATH, "model_builds", builds, page_size=2)

    async with AutopilotClient(make_settings(stand_in.base_url), page_size=2) as client:
        await client.list_builds(ASSISTANT)

    expected = basic_authorization(ACCOUNT_SID, AUTH_TOKEN)
    assert len(stand_in.requests) == 2
    assert [request.authorization for request in stand_in.requests] == [expected, expected]


async def test_credentials_api_key_and_secret(stand_in: AutopilotStandIn) -> None:
    stand_in.respond_json(BUILDS_PATH, list_body("model_builds", [], None))
    settings = load_settings(
        {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_API_KEY": API_KEY,
            "TWILIO_API_SECRET": API_SECRET,
            "AUTOPILOT_BASE_URL": stand_in.base_url,
        }
    )

    async with AutopilotClient(settings) as client:
        await client.list_builds(ASSISTANT)

    assert stand_in.requests[0].authorization == basic_authorization(API_KEY, API_SECRET)


# Identifiers


@pytest.mark.parametrize("identifier", PATH_CHANGING_IDENTIFIERS)
async def test_list_builds_path_changing_assistant_rejected(stand_in: AutopilotStandIn, identifier: str) -> None:
    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        with pytest.raises(InvalidIdentifierError, match="is not a valid assistant SID or unique name"):
            await client.list_builds(identifier)

    assert stand_in.requests == []


@pytest.mark.parametrize("identifier", PATH_CHANGING_IDENTIFIERS)
async def test_fetch_build_path_changing_build_rejected(stand_in: AutopilotStandIn, identifier: str) -> None:
    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        with pytest.raises(InvalidIdentifierError, match="is not a valid build SID or unique name"):
            await client.fetch_build(ASSISTANT, identifier)

    assert stand_in.requests == []


@pytest.mark.parametrize("identifier", PATH_CHANGING_IDENTIFIERS)
async def test_fetch_build_path_changing_assistant_rejected(stand_in: AutopilotStandIn, identifier: str) -> None:
    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        with pytest.raises(InvalidIdentifierError, match="is not a valid assistant SID or unique name"):
            await client.fetch_build(identifier, "build-1")

    assert stand_in.requests == []


async def test_list_builds_unique_name_one_path_segment(stand_in: AutopilotStandIn) -> None:
    stand_in.respond_json("/v1/Assistants/support-bot.v2_x/ModelBuilds", list_body("model_builds", [], None))

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        await client.list_builds("support-bot.v2_x")

    assert len(stand_in.requests) == 1
    assert stand_in.requests[0].path == "/v1/Assistants/support-bot.v2_x/ModelBuilds"


async def test_fetch_build_unique_name_one_path_segment(stand_in: AutopilotStandIn) -> None:
    path = f"/v1/Assistants/{ASSISTANT_SID}/ModelBuilds/release-2026.12_rc-1"
    stand_in.respond_json(path, build_json(1, day=1))

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        await client.fetch_build(ASSISTANT_SID, "release-2026.12_rc-1")

    assert len(stand_in.requests) == 1
    assert stand_in.requests[0].raw_path == path


# Error mapping


@pytest.mark.parametrize(
    ("response", "error_type", "message"),
    [
        (twilio_error(401, 20003, "Authenticate"), AuthenticationError, r"HTTP 401 from .*: Authenticate"),
        (twilio_error(404, 20404, "The requested resource was not found"), NotFoundError, r"HTTP 404 from .*not found"),
        (twilio_error(429, 20429, "Too Many Requests"), RateLimitedError, r"HTTP 429 from .*: Too Many Requests"),
        (CannedResponse(status=500, body="Internal Server Error"), ServerError, r"HTTP 500 from "),
        (CannedResponse(status=503, body="Service Unavailable"), ServerError, r"HTTP 503 from "),
        (twilio_error(400, 20001, "Invalid PageSize"), RequestRejectedError, r"HTTP 400 from .*: Invalid PageSize"),
        (CannedResponse(status=403, body="Forbidden"), RequestRejectedError, r"HTTP 403 from "),
    ],
)
async def test_list_builds_error_status_mapped(
    stand_in: AutopilotStandIn, response: CannedResponse, error_type: type[AutopilotError], message: str
) -> None:
    stand_in.respond(BUILDS_PATH, response)

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        with pytest.raises(error_type, match=message) as caught:
            await client.list_builds(ASSISTANT)

    assert type(caught.value) is error_type
    assert caught.value.status == response.status


async def test_authentication_error_carries_twilio_code(stand_in: AutopilotStandIn) -> None:
    stand_in.respond(BUILDS_PATH, twilio_error(401, 20003, "Authenticate"))

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        with pytest.raises(AuthenticationError, match="Authenticate") as caught:
            await client.list_builds(ASSISTANT)

    assert caught.value.code == 20003
    assert caught.value.docs_url == "https://www.twilio.com/docs/errors/20003"
    assert caught.value.more_info == "https://www.twilio.com/docs/errors/20003"


async def test_fetch_build_not_found_carries_twilio_code(stand_in: AutopilotStandIn) -> None:
    stand_in.respond(f"{BUILDS_PATH}/build-9", twilio_error(404, 20404, "The requested resource was not found"))

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        with pytest.raises(NotFoundError, match="not found") as caught:
            await client.fetch_build(ASSISTANT, "build-9")

    assert caught.value.code == 20404


async def test_rate_limited_error_carries_retry_after(stand_in: AutopilotStandIn) -> None:
    error_body = twilio_error(429, 20429, "Too Many Requests").json
    stand_in.respond(BUILDS_PATH, CannedResponse(status=429, json=error_body, headers={"Retry-After": "7"}))

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        with pytest.raises(RateLimitedError, match="Too Many Requests") as caught:
            await client.list_builds(ASSISTANT)

    assert caught.value.retry_after == 7
    assert caught.value.code == 20429


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (CannedResponse(body="<html><body>Bad gateway</body></html>", content_type="text/html"), "is not JSON"),
        (CannedResponse(body=b""), "is not JSON"),
        (CannedResponse(json={"model_builds": {}}), "expected a list of objects under 'model_builds'"),
        (CannedResponse(json=[build_json(1, day=1)]), "expected a JSON object with 'model_builds', got list"),
        (CannedResponse(json={"model_builds": [], "meta": {"next_page_url": 5}}), "next_page_url"),
        (CannedResponse(json={"model_builds": [], "meta": []}), "expected 'meta' to be an object"),
    ],
)
async def test_list_builds_invalid_body_rejected(stand_in: AutopilotStandIn, response: CannedResponse, message: str) -> None:
    stand_in.respond(BUILDS_PATH, response)

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        with pytest.raises(InvalidResponseError, match=message):
            await client.list_builds(ASSISTANT)


async def test_fetch_build_list_body_rejected(stand_in: AutopilotStandIn) -> None:
    stand_in.respond_json(f"{BUILDS_PATH}/build-1", [build_json(1, day=1)])

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        with pytest.raises(InvalidResponseError, match="expected a model build object, got list"):
            await client.fetch_build(ASSISTANT, "build-1")


async def test_list_builds_connection_refused() -> None:
    settings = make_settings(f"http://{HOST}:{unused_port()}")

    async with AutopilotClient(settings) as client:
        with pytest.raises(ApiConnectionError, match="could not connect to .*ConnectError"):
            await client.list_builds(ASSISTANT)


async def test_list_builds_times_out_at_deadline(stand_in: AutopilotStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autopilot, "REQUEST_DEADLINE", 0.3)
    stand_in.hold(asyncio.Event())
    stand_in.respond_json(BUILDS_PATH, list_body("model_builds", [], None))

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        started = time.monotonic()
        with pytest.raises(ApiTimeoutError, match="request to .*/ModelBuilds timed out"):
            await client.list_builds(ASSISTANT)
        elapsed = time.monotonic() - started

    assert len(stand_in.requests) == 1
    assert elapsed >= 0.25
    assert elapsed < FAST_FAILURE_SECONDS


# Results


async def test_list_builds_newest_first_without_duplicates(stand_in: AutopilotStandIn) -> None:
    """Builds arrive out of order with repeats across pages, and the copy updated last wins."""
    builds = [
        build_json(3, day=3, status="building"),
        build_json(1, day=1),
        build_json(5, day=5),
        build_json(3, day=3, updated_hour=2, status="failed"),
        build_json(2, day=2),
        build_json(4, day=4),
        build_json(1, day=1, updated_hour=-1, status="building"),
    ]
    stand_in.serve_pages(BUILDS_PATH, "model_builds", builds, page_size=2)

    async with AutopilotClient(make_settings(stand_in.base_url), page_size=2) as client:
        listing = await client.list_builds(ASSISTANT)

    statuses = {build.sid: build.status for build in listing.items}
    assert len(stand_in.requests) == 4
    assert [build.sid for build in listing.items] == [build_sid(number) for number in (5, 4, 3, 2, 1)]
    assert statuses[build_sid(3)] == "failed"
    assert statuses[build_sid(1)] == "completed"


async def test_fetch_build_parses_one_build(stand_in: AutopilotStandIn) -> None:
    stand_in.respond_json(f"{BUILDS_PATH}/build-4", build_json(4, day=4, status="Failed"))

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        build = await client.fetch_build(ASSISTANT, "build-4")

    assert build.sid == build_sid(4)
    assert build.unique_name == "build-4"
    assert build.status == "failed"
    assert build.assistant_sid == ASSISTANT_SID
    assert build.date_created is not None
    assert build.date_created.isoformat() == "2026-12-04T10:00:00+00:00"
    assert build.build_duration == 44
    assert build.error_code is None
    assert stand_in.requests[0].query == ""


async def test_list_assistants_pages(stand_in: AutopilotStandIn) -> None:
    assistants = [
        {"sid": f"UA{number:032x}", "unique_name": f"assistant-{number}", "friendly_name": f"Assistant {number}"}
        for number in range(1, 6)
    ]
    next_urls = stand_in.serve_pages(ASSISTANTS_PATH, "assistants", assistants, page_size=2)

    async with AutopilotClient(make_settings(stand_in.base_url), page_size=2) as client:
        listing = await client.list_assistants()

    assert [stand_in.base_url + request.raw_path for request in stand_in.requests[1:]] == next_urls
    assert stand_in.requests[0].raw_path == f"{ASSISTANTS_PATH}?PageSize=2"
    assert len(stand_in.requests) == 3
    assert listing.complete is True
    assert [assistant.unique_name for assistant in listing.items] == [f"assistant-{number}" for number in range(1, 6)]


# Life cycle and concurrency


async def test_client_request_before_enter_raises(stand_in: AutopilotStandIn) -> None:
    client = AutopilotClient(make_settings(stand_in.base_url))

    with pytest.raises(RuntimeError, match="AutopilotClient is not open"):
        await client.list_builds(ASSISTANT)

    assert stand_in.requests == []


async def test_client_request_after_exit_raises(stand_in: AutopilotStandIn) -> None:
    stand_in.respond_json(BUILDS_PATH, list_body("model_builds", [], None))

    async with AutopilotClient(make_settings(stand_in.base_url)) as client:
        await client.list_builds(ASSISTANT)

    with pytest.raises(RuntimeError, match="AutopilotClient is not open"):
        await client.list_builds(ASSISTANT)
    assert len(stand_in.requests) == 1


@pytest.mark.parametrize("max_connections", [4, MAX_CONNECTIONS])
async def test_list_builds_concurrent_within_connection_limit(
    stand_in: AutopilotStandIn, monkeypatch: pytest.MonkeyPatch, max_connections: int
) -> None:
    """More lists of different assistants than connections keep at most `max_connections` requests at the server.

    The pool timeout is cut to 10 ms, so any request left waiting for a pooled
    connection while the others are held fails with a timeout.
    """
    monkeypatch.setattr(autopilot, "TIMEOUTS", httpx.Timeout(FAST_FAILURE_SECONDS, pool=0.01))
    release = asyncio.Event()
    stand_in.hold(release)
    names = [f"assistant-{number}" for number in range(autopilot.MAX_CONNECTIONS + 10)]
    for name in names:
        stand_in.respond_json(f"/v1/Assistants/{name}/ModelBuilds", list_body("model_builds", [build_json(1, day=1)], None))

    async with AutopilotClient(make_settings(stand_in.base_url), max_connections=max_connections) as client:
        tasks = [asyncio.create_task(client.list_builds(name)) for name in names]
        async with asyncio.timeout(FAST_FAILURE_SECONDS):
            await stand_in.wait_for_in_flight(max_connections)
        release.set()
        listings = await asyncio.gather(*tasks)

    assert stand_in.max_in_flight == max_connections
    assert len(stand_in.requests) == len(names)
    assert sorted(request.path for request in stand_in.requests) == sorted(f"/v1/Assistants/{name}/ModelBuilds" for name in names)
    assert all(listing.complete for listing in listings)
    assert all(len(listing.items) == 1 for listing in listings)
