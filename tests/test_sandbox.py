"""Tests for the Autopilot sandbox server and its seed data, against real loopback servers."""

from __future__ import annotations

import asyncio
import copy
import functools
import io
import json
import logging
import re
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from jsonschema import FormatChecker
from openapi_schema_validator import OAS30Validator

from bot.sandbox import (
    DEMO_ACCOUNT_SID,
    DEMO_AUTH_TOKEN,
    REQUEST_LOG,
    RequestRecord,
    SandboxCredentials,
    SandboxServer,
    create_sandbox_app,
    run_sandbox,
)
from bot.sandbox_data import (
    BUILD_STATUSES,
    DEMO_ERROR_CODES,
    JsonDict,
    SandboxDataset,
    build_demo_dataset,
    parse_timestamp,
    with_absolute_urls,
)
from tests.conftest import shared_file

FIXED_NOW = datetime(2026, 12, 4, 20, 39, 21, tzinfo=UTC)
HOSTILE_TEXT = "<!channel> & <@U123> *bold*"
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
ASSISTANT_SID = re.compile(r"UA[0-9a-f]{32}")
BUILD_SID = re.compile(r"UG[0-9a-f]{32}")
ACCOUNT_SID = re.compile(r"AC[0-9a-f]{32}")

ASSISTANTS_PATH = "/v1/Assistants"
ASSISTANT_PATH = "/v1/Assistants/{Sid}"
BUILDS_PATH = "/v1/Assistants/{AssistantSid}/ModelBuilds"
BUILD_PATH = "/v1/Assistants/{AssistantSid}/ModelBuilds/{Sid}"

UNAUTHORIZED_BODY = {
    "code": 20003,
    "message": "Authenticate",
    "more_info": "https://www.twilio.com/docs/errors/20003",
    "status": 401,
}


# --- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[SandboxServer]:
    """Run a sandbox with the demo dataset on a free loopback port."""
    async with SandboxServer() as running:
        yield running


@pytest.fixture
async def client(server: SandboxServer) -> AsyncIterator[httpx.AsyncClient]:
    """Return a client that sends the sandbox's credentials."""
    async with _client_for(server) as authorized:
        yield authorized


def _client_for(server: SandboxServer, *, auth: Any = "server") -> httpx.AsyncClient:
    credentials = (server.credentials.account_sid, server.credentials.auth_token) if auth == "server" else auth
    return _loopback_client(server.base_url, auth=credentials)


def _loopback_client(base_url: str, *, auth: Any = None) -> httpx.AsyncClient:
    # trust_env=False keeps proxy settings from the environment away from loopback requests.
    return httpx.AsyncClient(base_url=base_url, auth=auth, trust_env=False, verify=_tls_context())


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # The sandbox speaks plain HTTP, so one shared context saves loading the CA bundle per client.
    return ssl.create_default_context()


async def _get_json(client: httpx.AsyncClient, url: str) -> JsonDict:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    body: JsonDict = response.json()
    return body


async def _collect_pages(client: httpx.AsyncClient, first_url: str, key: str) -> list[JsonDict]:
    """Follow next_page_url from ``first_url`` and return every page body in order."""
    pages = [await _get_json(client, first_url)]
    while pages[-1]["meta"]["next_page_url"] is not None:
        pages.append(await _get_json(client, pages[-1]["meta"]["next_page_url"]))
        assert len(pages) < 500, "paging does not end"
    assert all(page["meta"]["key"] == key for page in pages)
    return pages


def _path_segment(value: str) -> str:
    return quote(value, safe="")


def _all_sids(dataset: SandboxDataset, assistant_sid: str) -> list[str]:
    return [build["sid"] for build in dataset.builds_newest_first(assistant_sid)]


def _created(record: JsonDict) -> datetime:
    created = parse_timestamp(record["date_created"])
    assert created is not None, record
    return created


def _is_absolute_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# --- schema validation helpers --------------------------------------------------------------------


@functools.cache
def _read_spec_text() -> str:
    return shared_file("autopilot", "twilio_autopilot_v1.json").read_text(encoding="utf-8")


def _load_spec() -> JsonDict:
    spec: JsonDict = json.loads(_read_spec_text())
    return spec


def _format_checker() -> FormatChecker:
    """Return a checker for the three formats the Autopilot schemas use, which the OAS 3.0 checker skips."""
    checker = FormatChecker(formats=())

    @checker.checks("date-time")
    def _is_date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        pattern = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})"
        return re.fullmatch(pattern, value) is not None and parse_timestamp(value) is not None

    @checker.checks("uri")
    def _is_uri(value: object) -> bool:
        return not isinstance(value, str) or _is_absolute_http_url(value)

    @checker.checks("uri-map")
    def _is_uri_map(value: object) -> bool:
        return not isinstance(value, dict) or all(_is_absolute_http_url(url) for url in value.values())

    return checker


def _strict_components(spec: JsonDict) -> JsonDict:
    """Return the spec's schemas, tightened to the shape the sandbox promises.

    The spec marks no property as required, so every property of the two resources
    becomes required and unknown ones are rejected. Its ``status`` property sets
    ``$ref`` beside ``type`` and ``nullable``; OAS 3.0 ignores keywords beside a
    ``$ref`` and the referenced enum has no null, so the enum is inlined with null.
    """
    schemas = copy.deepcopy(spec["components"]["schemas"])
    for name in ("autopilot.v1.assistant", "autopilot.v1.assistant.model_build"):
        schemas[name]["required"] = sorted(schemas[name]["properties"])
        schemas[name]["additionalProperties"] = False

    status = schemas["autopilot.v1.assistant.model_build"]["properties"]["status"]
    assert status["$ref"] == "#/components/schemas/model_build_enum_status", "the spec's status property changed"
    del status["$ref"]
    status["enum"] = [*schemas["model_build_enum_status"]["enum"], None]
    return schemas


def _response_validator(spec: JsonDict, path: str) -> Any:
    """Build a validator for the 200 response of ``GET path``, with the components embedded."""
    schema = copy.deepcopy(spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"])
    if schema.get("type") == "object" and "meta" in schema.get("properties", {}):
        schema["required"] = sorted(schema["properties"])
        schema["additionalProperties"] = False
        meta = schema["properties"]["meta"]
        meta["required"] = sorted(meta["properties"])
        meta["additionalProperties"] = False

    schema["components"] = {"schemas": _strict_components(spec)}
    OAS30Validator.check_schema(schema)
    return OAS30Validator(schema, format_checker=_format_checker())


def _schema_errors(validator: Any, body: JsonDict) -> list[str]:
    return [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(body)]


# --- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        None,
        (DEMO_ACCOUNT_SID, "0" * 32),
        ("AC" + "0" * 32, DEMO_AUTH_TOKEN),
        ("", ""),
    ],
    ids=["missing", "wrong-token", "wrong-account", "empty"],
)
async def test_auth_rejects_bad_credentials(server: SandboxServer, auth: tuple[str, str] | None) -> None:
    async with _client_for(server, auth=auth) as client:
        response = await client.get(ASSISTANTS_PATH)

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED_BODY
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Twilio API"'


@pytest.mark.parametrize("header", ["Bearer abc", "Basic !!!not-base64!!!", "Basic " + "bm8tY29sb24="])
async def test_auth_rejects_malformed_header(server: SandboxServer, header: str) -> None:
    async with _client_for(server, auth=None) as client:
        response = await client.get(ASSISTANTS_PATH, headers={"Authorization": header})

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED_BODY


@pytest.mark.parametrize(
    "path",
    [
        "/v1/Assistants/support-bot",
        "/v1/Assistants/support-bot/ModelBuilds",
        "/v1/Assistants/no-such-assistant",
        "/v1/NoSuchResource",
    ],
)
async def test_auth_checked_before_routing(server: SandboxServer, path: str) -> None:
    """Unauthenticated requests get 401 without data, even for unknown paths."""
    async with _client_for(server, auth=None) as client:
        response = await client.get(path)

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED_BODY
    assert "support-bot" not in response.text


async def test_auth_accepts_custom_credentials() -> None:
    credentials = SandboxCredentials(account_sid="AC" + "1" * 32, auth_token="2" * 32)
    async with SandboxServer(credentials=credentials) as server:
        async with _client_for(server, auth=(credentials.account_sid, credentials.auth_token)) as client:
            accepted = await client.get(ASSISTANTS_PATH)
        async with _client_for(server, auth=(DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN)) as client:
            rejected = await client.get(ASSISTANTS_PATH)

    assert accepted.status_code == 200
    assert rejected.status_code == 401


def test_credentials_repr_masks_token() -> None:
    credentials = SandboxCredentials(account_sid=DEMO_ACCOUNT_SID, auth_token=DEMO_AUTH_TOKEN)

    assert DEMO_AUTH_TOKEN not in repr(credentials)
    assert DEMO_AUTH_TOKEN not in str(credentials)
    assert DEMO_ACCOUNT_SID in repr(credentials)


def test_credentials_reject_colon_in_account_sid() -> None:
    with pytest.raises(ValueError, match="contains ':'"):
        SandboxCredentials(account_sid="AC:1", auth_token="x")


def test_demo_credentials_have_twilio_shape() -> None:
    assert ACCOUNT_SID.fullmatch(DEMO_ACCOUNT_SID)
    assert re.fullmatch(r"[0-9a-f]{32}", DEMO_AUTH_TOKEN)


# --- fetching by SID and by unique_name -----------------------------------------------------------


async def test_fetch_assistant_by_sid_and_unique_name(server: SandboxServer, client: httpx.AsyncClient) -> None:
    for assistant in server.dataset.assistants:
        by_sid = await _get_json(client, f"/v1/Assistants/{assistant['sid']}")
        by_name = await _get_json(client, f"/v1/Assistants/{_path_segment(assistant['unique_name'])}")

        assert by_sid == with_absolute_urls(assistant, server.base_url)
        assert by_name == by_sid


async def test_fetch_build_by_sid_and_unique_name(server: SandboxServer, client: httpx.AsyncClient) -> None:
    """The four combinations of SID and unique_name fetch the same build, for the newest named builds."""
    checked = 0
    for assistant in server.dataset.assistants:
        named = [build for build in server.dataset.builds_newest_first(assistant["sid"]) if build["unique_name"]]
        for build in named[:4]:
            expected = with_absolute_urls(build, server.base_url)
            for assistant_id in (assistant["sid"], assistant["unique_name"]):
                for build_id in (build["sid"], build["unique_name"]):
                    url = f"/v1/Assistants/{_path_segment(assistant_id)}/ModelBuilds/{_path_segment(build_id)}"
                    assert await _get_json(client, url) == expected, url
                    checked += 1

    assert checked == 5 * 4 * 4


async def test_fetch_build_with_hostile_unique_name(server: SandboxServer, client: httpx.AsyncClient) -> None:
    """Names with mrkdwn, slashes and non-ASCII text work as percent-encoded path segments."""
    names = [HOSTILE_TEXT, "release/2026.12 (rc1) ünïcödé ~strike~"]
    for name in names:
        build = next(build for build in server.dataset.iter_builds() if build["unique_name"] == name)
        url = f"/v1/Assistants/{build['assistant_sid']}/ModelBuilds/{_path_segment(name)}"

        body = await _get_json(client, url)

        assert body["sid"] == build["sid"]
        assert body["unique_name"] == name


async def test_fetch_prefers_sid_over_unique_name() -> None:
    dataset = SandboxDataset()
    target = dataset.add_assistant(unique_name="target", friendly_name="Target")
    dataset.add_assistant(unique_name=target["sid"], friendly_name="Impostor")

    async with SandboxServer(dataset=dataset) as server, _client_for(server) as client:
        body = await _get_json(client, f"/v1/Assistants/{target['sid']}")

    assert body["friendly_name"] == "Target"


# --- not found and method not allowed -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/Assistants/UA" + "0" * 32,
        "/v1/Assistants/no-such-assistant",
        "/v1/Assistants/no-such-assistant/ModelBuilds",
        "/v1/Assistants/support-bot/ModelBuilds/UG" + "0" * 32,
        "/v1/Assistants/support-bot/ModelBuilds/no-such-build",
        "/v1/NoSuchResource",
        "/v1/Assistants/support-bot/Tasks",
        "/",
    ],
)
async def test_unknown_resource_returns_twilio_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 404
    assert response.json() == {
        "code": 20404,
        "message": f"The requested resource {path} was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    }


async def test_build_of_other_assistant_returns_404(server: SandboxServer, client: httpx.AsyncClient) -> None:
    support = server.dataset.find_assistant("support-bot")
    billing = server.dataset.find_assistant("billing-assistant")
    assert support is not None and billing is not None
    billing_build = server.dataset.builds[billing["sid"]][0]

    response = await client.get(f"/v1/Assistants/{support['sid']}/ModelBuilds/{billing_build['sid']}")

    assert response.status_code == 404
    assert response.json()["code"] == 20404


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", ["/v1/Assistants", "/v1/Assistants/support-bot/ModelBuilds"])
async def test_other_methods_return_405(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path)

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert response.json()["code"] == 20004
    assert response.json()["status"] == 405
    assert method in response.json()["message"]


async def test_head_returns_405(client: httpx.AsyncClient) -> None:
    response = await client.head(ASSISTANTS_PATH)

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"


# --- paging ---------------------------------------------------------------------------------------


async def test_paging_visits_every_build_once(server: SandboxServer, client: httpx.AsyncClient) -> None:
    multi_page_assistants = 0
    for assistant in server.dataset.assistants:
        first_url = f"/v1/Assistants/{assistant['sid']}/ModelBuilds?PageSize=7"
        pages = await _collect_pages(client, first_url, "model_builds")
        sids = [build["sid"] for page in pages for build in page["model_builds"]]

        assert sids == _all_sids(server.dataset, assistant["sid"])
        assert len(sids) == len(set(sids))
        assert len(sids) == len(server.dataset.builds[assistant["sid"]])
        assert [page["meta"]["page"] for page in pages] == list(range(len(pages)))
        assert all(len(page["model_builds"]) == 7 for page in pages[:-1])
        multi_page_assistants += len(pages) > 1

    assert multi_page_assistants >= 4


async def test_paging_lists_newest_first(server: SandboxServer, client: httpx.AsyncClient) -> None:
    pages = await _collect_pages(client, "/v1/Assistants/support-bot/ModelBuilds?PageSize=25", "model_builds")
    dates = [_created(build) for page in pages for build in page["model_builds"]]

    assert dates == sorted(dates, reverse=True)


async def test_paging_meta_urls_are_absolute(server: SandboxServer, client: httpx.AsyncClient) -> None:
    base = server.base_url
    pages = await _collect_pages(client, "/v1/Assistants/support-bot/ModelBuilds?PageSize=30", "model_builds")

    first, second, last = pages[0]["meta"], pages[1]["meta"], pages[-1]["meta"]
    assert first["first_page_url"] == f"{base}/v1/Assistants/support-bot/ModelBuilds?PageSize=30&Page=0"
    assert first["url"] == first["first_page_url"]
    assert first["previous_page_url"] is None
    assert first["page_size"] == 30
    assert first["next_page_url"].startswith(f"{base}/v1/Assistants/support-bot/ModelBuilds?PageSize=30&Page=1&")
    assert "PageToken=" in first["next_page_url"]
    assert second["url"] == first["next_page_url"]
    assert second["previous_page_url"].startswith(f"{base}/v1/Assistants/support-bot/ModelBuilds?PageSize=30&Page=0&")
    assert last["next_page_url"] is None
    for page in pages:
        urls = [page["meta"][name] for name in ("first_page_url", "url", "next_page_url", "previous_page_url")]
        assert all(url is None or _is_absolute_http_url(url) for url in urls), urls


async def test_paging_follows_previous_page_url(client: httpx.AsyncClient) -> None:
    pages = await _collect_pages(client, "/v1/Assistants/billing-assistant/ModelBuilds?PageSize=10", "model_builds")

    previous = await _get_json(client, pages[2]["meta"]["previous_page_url"])

    assert previous["model_builds"] == pages[1]["model_builds"]
    assert previous["meta"]["page"] == 1


async def test_paging_defaults_to_50_per_page(server: SandboxServer, client: httpx.AsyncClient) -> None:
    body = await _get_json(client, "/v1/Assistants/support-bot/ModelBuilds")

    assert len(body["model_builds"]) == 50
    assert body["meta"]["page_size"] == 50
    assert body["meta"]["page"] == 0
    assert body["meta"]["url"] == f"{server.base_url}/v1/Assistants/support-bot/ModelBuilds?PageSize=50&Page=0"


async def test_paging_page_without_token_uses_offset(server: SandboxServer, client: httpx.AsyncClient) -> None:
    body = await _get_json(client, "/v1/Assistants/support-bot/ModelBuilds?PageSize=10&Page=2")

    assert [build["sid"] for build in body["model_builds"]] == _all_sids(server.dataset, "support-bot")[20:30]
    assert body["meta"]["page"] == 2
    assert body["meta"]["previous_page_url"] is not None


async def test_paging_past_the_end_is_empty(client: httpx.AsyncClient) -> None:
    body = await _get_json(client, "/v1/Assistants/support-bot/ModelBuilds?PageSize=50&Page=100")

    assert body["model_builds"] == []
    assert body["meta"]["next_page_url"] is None


async def test_paging_empty_assistant_lists_nothing(client: httpx.AsyncClient) -> None:
    body = await _get_json(client, "/v1/Assistants/legacy-ivr-menu/ModelBuilds")

    assert body["model_builds"] == []
    assert body["meta"]["next_page_url"] is None
    assert body["meta"]["previous_page_url"] is None


@pytest.mark.parametrize(("page_size", "page_count"), [(1, 6), (3, 2), (4, 2), (6, 1), (7, 1)])
async def test_paging_lists_assistants_once(
    server: SandboxServer, client: httpx.AsyncClient, page_size: int, page_count: int
) -> None:
    """The last page has no next_page_url, also when the count is a multiple of the page size."""
    pages = await _collect_pages(client, f"/v1/Assistants?PageSize={page_size}", "assistants")
    sids = [assistant["sid"] for page in pages for assistant in page["assistants"]]

    assert len(server.dataset.assistants) == 6
    assert len(pages) == page_count
    assert all(page["assistants"] for page in pages)
    assert sids == [assistant["sid"] for assistant in server.dataset.assistants_newest_first()]
    assert sorted(sids) == sorted(assistant["sid"] for assistant in server.dataset.assistants)


@pytest.mark.parametrize("page_size", [1, 1000])
async def test_paging_accepts_page_size_bounds(
    server: SandboxServer, client: httpx.AsyncClient, page_size: int
) -> None:
    body = await _get_json(client, f"/v1/Assistants/support-bot/ModelBuilds?PageSize={page_size}")

    assert body["meta"]["page_size"] == page_size
    assert len(body["model_builds"]) == min(page_size, len(_all_sids(server.dataset, "support-bot")))


@pytest.mark.parametrize("path", [ASSISTANTS_PATH, "/v1/Assistants/support-bot/ModelBuilds"])
@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("PageSize=0", "PageSize"),
        ("PageSize=1001", "PageSize"),
        ("PageSize=5000", "PageSize"),
        ("PageSize=-3", "PageSize"),
        ("PageSize=abc", "PageSize"),
        ("PageSize=", "PageSize"),
        ("PageSize=1.5", "PageSize"),
        ("PageSize=" + "9" * 5000, "PageSize"),
        ("Page=-1", "Page"),
        ("Page=first", "Page"),
        ("PageToken=bogus", "PageToken"),
        ("PageToken=PT%21%21%21", "PageToken"),
        ("PageToken=PTbm90LWFuLW9mZnNldA", "PageToken"),
        ("PageToken=", "PageToken"),
    ],
)
async def test_paging_rejects_invalid_parameter(
    client: httpx.AsyncClient, path: str, query: str, parameter: str
) -> None:
    response = await client.get(f"{path}?{query}")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 20001
    assert body["status"] == 400
    assert body["more_info"] == "https://www.twilio.com/docs/errors/20001"
    assert body["message"].startswith(f"Invalid parameter {parameter}:"), body["message"]


# --- latency, request log, logging ----------------------------------------------------------------


@pytest.mark.parametrize("auth", ["server", None], ids=["authorized", "unauthorized"])
async def test_latency_delays_every_answer(auth: str | None) -> None:
    latency = 0.2
    async with SandboxServer(latency=latency) as server, _client_for(server, auth=auth) as client:
        started = time.perf_counter()
        response = await client.get(ASSISTANTS_PATH)
        elapsed = time.perf_counter() - started

    assert response.status_code == (200 if auth else 401)
    assert elapsed >= latency


def test_latency_rejects_negative_value() -> None:
    with pytest.raises(ValueError, match="latency must be zero or more seconds, got -1"):
        create_sandbox_app(
            dataset=SandboxDataset(), credentials=SandboxCredentials(DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN), latency=-1
        )


async def test_request_log_records_each_request(server: SandboxServer, client: httpx.AsyncClient) -> None:
    await client.get("/v1/Assistants?PageSize=5&Extra=a%20b")
    await client.get("/v1/Assistants/support-bot/ModelBuilds/no-such-build")
    async with _client_for(server, auth=None) as anonymous:
        await anonymous.get("/v1/Assistants/support-bot")
    await client.delete("/v1/Assistants")

    assert server.requests == [
        RequestRecord("GET", "/v1/Assistants", "PageSize=5&Extra=a%20b", authorized=True, status=200),
        RequestRecord("GET", "/v1/Assistants/support-bot/ModelBuilds/no-such-build", "", authorized=True, status=404),
        RequestRecord("GET", "/v1/Assistants/support-bot", "", authorized=False, status=401),
        RequestRecord("DELETE", "/v1/Assistants", "", authorized=True, status=405),
    ]


def test_request_log_starts_empty_in_app() -> None:
    app = create_sandbox_app(
        dataset=SandboxDataset(), credentials=SandboxCredentials(DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN)
    )

    assert app[REQUEST_LOG] == []


async def test_request_log_keeps_no_credentials(server: SandboxServer, client: httpx.AsyncClient) -> None:
    await client.get(ASSISTANTS_PATH)

    assert DEMO_AUTH_TOKEN not in repr(server.requests)


async def test_logging_omits_token(
    server: SandboxServer, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.sandbox")

    await client.get("/v1/Assistants/support-bot")
    async with _client_for(server, auth=(DEMO_ACCOUNT_SID, "f" * 32)) as wrong:
        await wrong.get(ASSISTANTS_PATH)

    sandbox_lines = [record.getMessage() for record in caplog.records if record.name == "bot.sandbox"]
    assert "Sandbox responded to GET /v1/Assistants/support-bot with 200" in sandbox_lines
    assert "Sandbox responded to GET /v1/Assistants with 401" in sandbox_lines
    assert DEMO_AUTH_TOKEN not in caplog.text
    assert "f" * 32 not in caplog.text
    assert "Basic " not in caplog.text


# --- server lifecycle -----------------------------------------------------------------------------


async def test_server_stops_on_exit() -> None:
    async with SandboxServer() as server:
        base_url = server.base_url
        async with _client_for(server) as client:
            assert (await client.get(ASSISTANTS_PATH)).status_code == 200

    async with _loopback_client(base_url) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(ASSISTANTS_PATH)


async def test_server_base_url_is_loopback(server: SandboxServer) -> None:
    parts = urlsplit(server.base_url)

    assert parts.scheme == "http"
    assert parts.hostname == "127.0.0.1"
    assert parts.port is not None and parts.port > 0
    assert parts.path == ""


def test_server_properties_require_start() -> None:
    server = SandboxServer()

    with pytest.raises(RuntimeError, match="start"):
        _ = server.base_url
    with pytest.raises(RuntimeError, match="start"):
        _ = server.dataset
    with pytest.raises(RuntimeError, match="start"):
        _ = server.requests
    assert server.credentials == SandboxCredentials(DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN)


async def test_server_rejects_second_start(server: SandboxServer) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        await server.start()


async def test_server_reflects_dataset_changes(server: SandboxServer, client: httpx.AsyncClient) -> None:
    server.dataset.add_build("legacy-ivr-menu", unique_name="first-build", status="enqueued", build_duration=None)

    body = await _get_json(client, "/v1/Assistants/legacy-ivr-menu/ModelBuilds")

    assert [build["unique_name"] for build in body["model_builds"]] == ["first-build"]


async def test_run_sandbox_prints_settings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.sandbox")
    output = _SettingsSink()
    task = asyncio.create_task(run_sandbox(out=output))
    await asyncio.wait_for(output.complete.wait(), timeout=10)

    lines = output.getvalue().splitlines()
    assert all(line.startswith("export ") for line in lines)
    settings = dict(line.removeprefix("export ").split("=", 1) for line in lines)
    auth = (settings["TWILIO_ACCOUNT_SID"], settings["TWILIO_AUTH_TOKEN"])
    async with _loopback_client(settings["AUTOPILOT_BASE_URL"], auth=auth) as client:
        response = await client.get(ASSISTANTS_PATH)

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(httpx.ConnectError):
            await client.get(ASSISTANTS_PATH)

    assert sorted(settings) == ["AUTOPILOT_BASE_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"]
    assert settings["TWILIO_ACCOUNT_SID"] == DEMO_ACCOUNT_SID
    assert settings["TWILIO_AUTH_TOKEN"] == DEMO_AUTH_TOKEN
    assert response.status_code == 200
    messages = [record.getMessage() for record in caplog.records if record.name == "bot.sandbox"]
    assert f"Autopilot sandbox started at {settings['AUTOPILOT_BASE_URL']}" in messages
    assert f"Autopilot sandbox at {settings['AUTOPILOT_BASE_URL']} is stopping" in messages
    assert DEMO_AUTH_TOKEN not in caplog.text


class _SettingsSink(io.StringIO):
    """Text stream that signals once the last settings line has been written."""

    def __init__(self) -> None:
        super().__init__()
        self.complete = asyncio.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if "TWILIO_AUTH_TOKEN=" in self.getvalue():
            self.complete.set()
        return written


# --- custom datasets ------------------------------------------------------------------------------


async def test_dataset_odd_values_served_as_stored() -> None:
    dataset = SandboxDataset(now=FIXED_NOW)
    assistant = dataset.add_assistant(unique_name=None, friendly_name=None, log_queries=None)
    build = dataset.add_build(
        assistant["sid"],
        status="exploding",
        date_created="Fri, 04 Dec 2026 20:39:21 +0000",
        build_duration=None,
        error_code=99999,
        unique_name=None,
        extra_field={"nested": True},
    )

    async with SandboxServer(dataset=dataset) as server, _client_for(server) as client:
        listed = await _get_json(client, f"/v1/Assistants/{assistant['sid']}/ModelBuilds")
        fetched = await _get_json(client, f"/v1/Assistants/{assistant['sid']}/ModelBuilds/{build['sid']}")
        fetched_assistant = await _get_json(client, f"/v1/Assistants/{assistant['sid']}")
        base_url = server.base_url

    assert fetched == with_absolute_urls(build, base_url)
    assert listed["model_builds"] == [fetched]
    assert fetched["status"] == "exploding"
    assert fetched["date_created"] == "Fri, 04 Dec 2026 20:39:21 +0000"
    assert fetched["extra_field"] == {"nested": True}
    assert fetched_assistant["unique_name"] is None
    assert fetched_assistant["log_queries"] is None


def test_dataset_orders_mixed_date_formats() -> None:
    dataset = SandboxDataset(now=FIXED_NOW)
    assistant = dataset.add_assistant(unique_name="a", friendly_name="A")
    iso = dataset.add_build("a", unique_name="iso", date_created="2026-12-04T10:00:00Z")
    missing = dataset.add_build("a", unique_name="missing", date_created=None)
    rfc = dataset.add_build("a", unique_name="rfc", date_created="Fri, 04 Dec 2026 11:00:00 +0000")
    garbage = dataset.add_build("a", unique_name="garbage", date_created="yesterday-ish")
    tie_first = dataset.add_build("a", unique_name="tie-first", date_created="2026-12-01T00:00:00Z")
    tie_second = dataset.add_build("a", unique_name="tie-second", date_created="2026-12-01T00:00:00Z")

    ordered = dataset.builds_newest_first(assistant["sid"])

    assert ordered == [rfc, iso, tie_second, tie_first, garbage, missing]


def test_dataset_add_build_defaults() -> None:
    dataset = SandboxDataset(now=FIXED_NOW, account_sid="AC" + "3" * 32)
    assistant = dataset.add_assistant(unique_name="a", friendly_name="A")

    build = dataset.add_build("a")

    assert BUILD_SID.fullmatch(build["sid"])
    assert build["assistant_sid"] == assistant["sid"]
    assert build["account_sid"] == "AC" + "3" * 32
    assert build["status"] == "completed"
    assert build["date_created"] == "2026-12-04T20:39:21Z"
    assert build["url"] == f"/v1/Assistants/{assistant['sid']}/ModelBuilds/{build['sid']}"
    assert assistant["latest_model_build_sid"] == build["sid"]


def test_dataset_add_build_rejects_unknown_assistant() -> None:
    dataset = SandboxDataset()

    with pytest.raises(KeyError, match="no assistant with SID or unique_name 'ghost'"):
        dataset.add_build("ghost")


def test_dataset_rejects_duplicate_assistant_sid() -> None:
    dataset = SandboxDataset()
    first = dataset.add_assistant(unique_name="a", friendly_name="A")

    with pytest.raises(ValueError, match="exists already"):
        dataset.add_assistant(unique_name="b", friendly_name="B", sid=first["sid"])


def test_dataset_rejects_naive_now() -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        SandboxDataset(now=datetime(2026, 12, 4, 20, 39, 21))


async def test_dataset_empty_lists_no_assistants() -> None:
    async with SandboxServer(dataset=SandboxDataset()) as server, _client_for(server) as client:
        body = await _get_json(client, ASSISTANTS_PATH)

    assert body["assistants"] == []
    assert body["meta"]["next_page_url"] is None
    assert body["meta"]["key"] == "assistants"


# --- demo dataset ---------------------------------------------------------------------------------


@pytest.fixture
def demo() -> SandboxDataset:
    """Return the demo dataset at a fixed time."""
    return build_demo_dataset(now=FIXED_NOW)


def _newest_statuses(dataset: SandboxDataset) -> dict[str, str | None]:
    newest = {}
    for assistant in dataset.assistants:
        builds = dataset.builds_newest_first(assistant["sid"])
        newest[assistant["unique_name"]] = builds[0]["status"] if builds else None
    return newest


def test_demo_is_deterministic(demo: SandboxDataset) -> None:
    again = build_demo_dataset(now=FIXED_NOW)
    other_seed = build_demo_dataset(now=FIXED_NOW, seed=8)

    assert again.assistants == demo.assistants
    assert again.builds == demo.builds
    assert other_seed.assistants[0]["sid"] != demo.assistants[0]["sid"]


def test_demo_size(demo: SandboxDataset) -> None:
    assert 5 <= len(demo.assistants) <= 8
    assert 200 <= len(list(demo.iter_builds())) <= 600


def test_demo_covers_every_status(demo: SandboxDataset) -> None:
    statuses = Counter(build["status"] for build in demo.iter_builds())

    assert set(statuses) == set(BUILD_STATUSES)


def test_demo_has_recent_and_old_builds(demo: SandboxDataset) -> None:
    day_ago = FIXED_NOW - timedelta(hours=24)
    week_ago = FIXED_NOW - timedelta(days=7)
    builds = list(demo.iter_builds())
    recent_failures = [build for build in builds if build["status"] == "failed" and _created(build) >= day_ago]

    assert len(recent_failures) >= 2
    assert any(_created(build) < week_ago for build in builds)
    assert all(_created(build) <= FIXED_NOW for build in builds)


def test_demo_has_red_building_and_empty_assistants(demo: SandboxDataset) -> None:
    newest = _newest_statuses(demo)

    assert "failed" in newest.values()
    assert "building" in newest.values()
    assert None in newest.values()


def test_demo_has_hostile_and_long_names(demo: SandboxDataset) -> None:
    unique_names = [assistant["unique_name"] for assistant in demo.assistants]
    friendly_names = [assistant["friendly_name"] for assistant in demo.assistants]
    build_names = [build["unique_name"] for build in demo.iter_builds()]

    assert any(len(name) == 64 for name in unique_names)
    assert all(len(name) <= 64 for name in unique_names)
    assert any(HOSTILE_TEXT in name for name in friendly_names)
    assert HOSTILE_TEXT in build_names
    assert None in build_names
    assert any(name is not None and len(name) == 64 for name in build_names)
    assert any(name is not None and "/" in name for name in build_names)


def test_demo_build_fields_are_consistent(demo: SandboxDataset) -> None:
    for build in demo.iter_builds():
        if build["status"] in ("enqueued", "building"):
            assert build["build_duration"] is None, build
        if build["status"] == "completed":
            assert isinstance(build["build_duration"], int), build
        if build["status"] == "failed":
            assert build["error_code"] in DEMO_ERROR_CODES, build
        else:
            assert build["error_code"] is None, build


def test_demo_ids_and_dates_have_twilio_shape(demo: SandboxDataset) -> None:
    for assistant in demo.assistants:
        assert ASSISTANT_SID.fullmatch(assistant["sid"])
        assert ACCOUNT_SID.fullmatch(assistant["account_sid"])
        assert TIMESTAMP.fullmatch(assistant["date_created"])
        assert assistant["url"] == f"/v1/Assistants/{assistant['sid']}"
    for build in demo.iter_builds():
        assert BUILD_SID.fullmatch(build["sid"])
        assert TIMESTAMP.fullmatch(build["date_created"])
        assert TIMESTAMP.fullmatch(build["date_updated"])
        assert build["date_updated"] >= build["date_created"]


def test_demo_build_names_unique_per_assistant(demo: SandboxDataset) -> None:
    for builds in demo.builds.values():
        names = [build["unique_name"] for build in builds if build["unique_name"] is not None]
        assert len(names) == len(set(names))


def test_demo_latest_build_sid_is_newest(demo: SandboxDataset) -> None:
    for assistant in demo.assistants:
        builds = demo.builds_newest_first(assistant["sid"])
        expected = builds[0]["sid"] if builds else None
        assert assistant["latest_model_build_sid"] == expected


# --- schema conformance ---------------------------------------------------------------------------


async def test_schema_accepts_every_demo_response(server: SandboxServer, client: httpx.AsyncClient) -> None:
    """Every list and fetch response for the demo dataset matches Twilio's response schemas."""
    spec = _load_spec()
    paths = (ASSISTANTS_PATH, ASSISTANT_PATH, BUILDS_PATH, BUILD_PATH)
    validators = {path: _response_validator(spec, path) for path in paths}
    checked = Counter[str]()

    for page in await _collect_pages(client, f"{ASSISTANTS_PATH}?PageSize=2", "assistants"):
        assert _schema_errors(validators[ASSISTANTS_PATH], page) == []
        checked[ASSISTANTS_PATH] += 1

    for assistant in server.dataset.assistants:
        body = await _get_json(client, f"/v1/Assistants/{assistant['sid']}")
        assert _schema_errors(validators[ASSISTANT_PATH], body) == []
        checked[ASSISTANT_PATH] += 1

        for page in await _collect_pages(client, f"/v1/Assistants/{assistant['sid']}/ModelBuilds", "model_builds"):
            assert _schema_errors(validators[BUILDS_PATH], page) == []
            checked[BUILDS_PATH] += 1
            for build in page["model_builds"]:
                fetched = await _get_json(client, build["url"])
                assert _schema_errors(validators[BUILD_PATH], fetched) == [], fetched
                checked[BUILD_PATH] += 1

    assert checked[BUILD_PATH] == len(list(server.dataset.iter_builds()))
    assert checked[ASSISTANT_PATH] == len(server.dataset.assistants)


def _valid_build_body() -> JsonDict:
    dataset = build_demo_dataset(now=FIXED_NOW)
    build = next(build for build in dataset.iter_builds() if build["status"] == "failed")
    return with_absolute_urls(build, "http://127.0.0.1:8080")


def _break_build(change: str) -> JsonDict:
    body = _valid_build_body()
    match change:
        case "unknown status":
            body["status"] = "exploded"
        case "missing status":
            del body["status"]
        case "extra field":
            body["surprise"] = 1
        case "short sid":
            body["sid"] = "UG123"
        case "assistant sid in sid":
            body["sid"] = body["assistant_sid"]
        case "rfc 2822 date":
            body["date_created"] = "Fri, 04 Dec 2026 20:39:21 +0000"
        case "relative url":
            body["url"] = "/v1/Assistants/x/ModelBuilds/y"
        case "duration as text":
            body["build_duration"] = "120"
        case "error code as text":
            body["error_code"] = "23001"
    return body


@pytest.mark.parametrize(
    "change",
    [
        "unknown status",
        "missing status",
        "extra field",
        "short sid",
        "assistant sid in sid",
        "rfc 2822 date",
        "relative url",
        "duration as text",
        "error code as text",
    ],
)
def test_schema_rejects_broken_build(change: str) -> None:
    validator = _response_validator(_load_spec(), BUILD_PATH)

    assert _schema_errors(validator, _valid_build_body()) == []
    assert _schema_errors(validator, _break_build(change)) != []


def test_schema_accepts_null_status() -> None:
    """Every model build field is nullable in the spec, status included."""
    validator = _response_validator(_load_spec(), BUILD_PATH)
    body = _valid_build_body()
    body["status"] = None

    assert _schema_errors(validator, body) == []


def test_schema_rejects_broken_list_meta() -> None:
    validator = _response_validator(_load_spec(), BUILDS_PATH)
    meta = {
        "first_page_url": "http://127.0.0.1:8080/v1/Assistants/x/ModelBuilds?PageSize=50&Page=0",
        "key": "model_builds",
        "next_page_url": None,
        "page": 0,
        "page_size": 50,
        "previous_page_url": None,
        "url": "http://127.0.0.1:8080/v1/Assistants/x/ModelBuilds?PageSize=50&Page=0",
    }
    relative_next = dict(meta, next_page_url="/v1/Assistants/x/ModelBuilds?Page=1")
    without_key = {name: value for name, value in meta.items() if name != "key"}

    assert _schema_errors(validator, {"model_builds": [_valid_build_body()], "meta": meta}) == []
    assert _schema_errors(validator, {"model_builds": []}) != []
    assert _schema_errors(validator, {"model_builds": [], "meta": relative_next}) != []
    assert _schema_errors(validator, {"model_builds": [], "meta": without_key}) != []
    assert _schema_errors(validator, {"model_builds": [{"status": "completed"}], "meta": meta}) != []
