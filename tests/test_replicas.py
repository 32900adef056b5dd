"""Several replicas on one Redis: each failure alerted once, takeover when the leader dies, and Redis outages.

The replicas are real `builds-bot serve` processes (or an in-process runtime
for the outage test) sharing a private redis-server on a free loopback port,
one sandbox API and one Slack stand-in that this test process runs.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from bot.errors import StateUnavailableError
from bot.sandbox import SandboxServer
from bot.sandbox_data import SandboxDataset, format_timestamp
from tests.alert_fixtures import Clock, alert_bot
from tests.conftest import bot_environment
from tests.harness import message_text, running_bot
from tests.redis_server import RedisServer, require_redis_server
from tests.slack_server import SlackStandIn

CONSOLE_SCRIPT = Path(sys.executable).with_name("builds-bot")
LEASE_KEY = "builds-bot:lease:alerts-leader"
WAIT_LIMIT = 30.0
NOW = datetime.now(UTC).replace(microsecond=0)


async def wait_until(condition: Callable[[], bool], *, timeout: float = WAIT_LIMIT, description: str) -> None:
    """Check `condition` every 50 ms until it holds; fail naming `description` after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {description}")
        await asyncio.sleep(0.05)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    require_redis_server()
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def dataset() -> SandboxDataset:
    data = SandboxDataset(now=NOW)
    assistant = data.add_assistant(unique_name="support-bot", friendly_name="Support")
    created = format_timestamp(NOW - timedelta(days=1))
    data.add_build(assistant["sid"], unique_name="baseline", status="completed", date_created=created, date_updated=created, build_duration=60)
    return data


def add_failure(sandbox: SandboxServer, name: str) -> None:
    created = format_timestamp(datetime.now(UTC) - timedelta(seconds=5))
    sandbox.dataset.add_build("support-bot", unique_name=name, status="failed", error_code=23001, date_created=created, date_updated=created)


class Replica:
    """One `builds-bot serve --http` process."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port

    @property
    def pid(self) -> int:
        return self.process.pid


async def start_replica(env: dict[str, str]) -> Replica:
    command = [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "bot.cli"]
    process = await asyncio.create_subprocess_exec(
        *command, "serve", "--http", "--host", "127.0.0.1", "--port", "0", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), WAIT_LIMIT)).decode()
        if not line:
            raise AssertionError("a replica exited before it started")
        match = re.search(r"server\.started .*port=(\d+)", line)
        if match:
            asyncio.ensure_future(_drain(process))
            return Replica(process, int(match.group(1)))


async def _drain(process: asyncio.subprocess.Process) -> None:
    assert process.stderr is not None
    while await process.stderr.readline():
        pass


async def stop_replica(replica: Replica) -> None:
    if replica.process.returncode is None:
        replica.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(replica.process.wait(), WAIT_LIMIT)


@pytest.fixture
async def stand_ins() -> AsyncIterator[tuple[SandboxServer, SlackStandIn]]:
    async with SandboxServer(dataset=dataset()) as sandbox, SlackStandIn() as slack:
        yield sandbox, slack


def replica_environment(sandbox: SandboxServer, slack: SlackStandIn, redis_url: str) -> dict[str, str]:
    keep = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    return {
        **keep,
        "PYTHONUNBUFFERED": "1",
        **bot_environment(
            autopilot_url=sandbox.base_url,
            account_sid=sandbox.credentials.account_sid,
            auth_token=sandbox.credentials.auth_token,
            slack_api_url=slack.api_url,
            BUILDS_STATE_URL=redis_url,
            BUILDS_POLL_INTERVAL="1",
            BUILDS_CACHE_TTL="0",
            BUILDS_ALERT_CHANNEL="C0ALERTS",
            BUILDS_ASSISTANTS="support-bot",
        ),
    }


def polls(sandbox: SandboxServer) -> int:
    return sum(1 for record in sandbox.requests if record.path == "/v1/Assistants/support-bot/ModelBuilds")


async def test_two_replicas_alert_once_and_take_over(
    redis_server: RedisServer, stand_ins: tuple[SandboxServer, SlackStandIn]
) -> None:
    sandbox, slack = stand_ins
    env = replica_environment(sandbox, slack, redis_server.url)
    replicas = [await start_replica(env), await start_replica(env)]
    lease = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await wait_until(lambda: polls(sandbox) >= 2, description="the baseline poll")
        add_failure(sandbox, "first-failure")
        await slack.wait_for_call("chat.postMessage", timeout=WAIT_LIMIT)
        after_first = polls(sandbox)
        await wait_until(lambda: polls(sandbox) >= after_first + 3, description="three more polls")
        first_posts = len(slack.api_calls("chat.postMessage"))

        holder = lease.get(LEASE_KEY)
        assert holder is not None
        leader = next(replica for replica in replicas if f":{replica.pid}:" in holder)
        leader.process.kill()
        await leader.process.wait()
        add_failure(sandbox, "second-failure")
        await wait_until(lambda: len(slack.api_calls("chat.postMessage")) >= 2, description="the survivor's alert")
        survivor_polls = polls(sandbox)
        await wait_until(lambda: polls(sandbox) >= survivor_polls + 3, description="three more polls by the survivor")
        new_holder = lease.get(LEASE_KEY)
    finally:
        lease.close()
        for replica in replicas:
            await stop_replica(replica)

    posts = [message_text(call.body) for call in slack.api_calls("chat.postMessage")]
    assert first_posts == 1
    assert len(posts) == 2
    assert "first-failure" in posts[0]
    assert "second-failure" in posts[1]
    assert new_holder is not None
    assert f":{leader.pid}:" not in new_holder


async def test_redis_outage_lookups_answer_and_alerts_resume(
    redis_server: RedisServer, stand_ins: tuple[SandboxServer, SlackStandIn]
) -> None:
    sandbox, slack = stand_ins
    async with alert_bot(sandbox, slack, clock=Clock(now=datetime.now(UTC)), state_url=redis_server.url) as bot:
        await bot.command("subscribe support-bot")
        await bot.poll()

        redis_server.pause()
        try:
            lookup = await bot.command("support-bot")
            ready = await bot.http.get("/readyz")
            rejected = await bot.command("mute support-bot 1h")
            add_failure(sandbox, "during-outage")
            with pytest.raises(StateUnavailableError, match="127.0.0.1"):
                await bot.poll()
        finally:
            redis_server.resume()

        await bot.poll()
        sent = await bot.send()
        ready_again = await bot.http.get("/readyz")

    assert "Builds of support-bot" in message_text(lookup)
    assert ready.status_code == 503
    assert "state_store" in ready.json()["problems"]
    assert "Alert settings are unavailable right now" in message_text(rejected)
    assert sent == 1
    assert "during-outage" in message_text(slack.api_calls("chat.postMessage")[0].body)
    assert ready_again.status_code == 200


async def test_start_while_redis_down_then_recover(
    redis_server: RedisServer, stand_ins: tuple[SandboxServer, SlackStandIn]
) -> None:
    """A replica that starts while Redis is down serves lookups, reports not ready, and recovers without a restart."""
    sandbox, slack = stand_ins
    redis_server.stop()
    async with alert_bot(sandbox, slack, clock=Clock(now=datetime.now(UTC)), state_url=redis_server.url) as bot:
        lookup = await bot.command("support-bot")
        not_ready = await bot.http.get("/readyz")

        redis_server.start()
        assert bot.runtime.alerts is not None
        await asyncio.wait_for(bot.runtime.alerts.opened.wait(), WAIT_LIMIT)
        subscribed = await bot.command("subscribe support-bot")
        ready = await bot.http.get("/readyz")

    assert "Builds of support-bot" in message_text(lookup)
    assert not_ready.status_code == 503
    assert "state_store" in not_ready.json()["problems"]
    assert "now gets alerts for support-bot" in message_text(subscribed)
    assert ready.status_code == 200


async def test_shared_cache_one_request_for_two_replicas(
    redis_server: RedisServer, stand_ins: tuple[SandboxServer, SlackStandIn]
) -> None:
    """With BUILDS_CACHE_URL, two replicas serving 20 identical lookups make one upstream request."""
    sandbox, slack = stand_ins
    credentials = sandbox.credentials
    options = {"BUILDS_CACHE_URL": redis_server.url}
    async with (
        running_bot(slack, autopilot_url=sandbox.base_url, account_sid=credentials.account_sid, auth_token=credentials.auth_token, **options) as first,
        running_bot(slack, autopilot_url=sandbox.base_url, account_sid=credentials.account_sid, auth_token=credentials.auth_token, **options) as second,
    ):
        responses = await asyncio.gather(*(replica.command("support-bot") for replica in [first, second] * 10))
        replies = [await slack.next_response() for response in responses if not response.text]

    assert all(response.status_code == 200 for response in responses)
    assert all("Builds of support-bot" in message_text(reply.body) for reply in replies)
    assert polls(sandbox) == 1
