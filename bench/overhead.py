"""The CPU time of one slash command by function, measured in-process with cProfile.

Unlike the other scripts, this one runs `BotRuntime`, the sandbox and the
Slack stand-in inside the load generator's process, so cProfile records
every function of the bot's request path. It sends commands one at a time, so
no request waits for another. Two kinds: a cache miss (acknowledged empty,
then replied to through the response_url) and a warm lookup whose reply is
the acknowledgement. cProfile slows Python code, here by roughly a factor of
two, so the shares of each part matter more than the absolute microseconds.
The first two rows are measured without the profiler.
"""

from __future__ import annotations

import cProfile
import pstats
import random
import sys
import time
from collections.abc import Iterable

from bench.client import Connection
from bench.common import Profile, progress, script_main
from bench.dataset import assistant_name, build_bench_dataset
from bench.load import Sample, send_command
from bench.report import Table, percentile
from bench.slack import BOT_TOKEN, SIGNING_SECRET, SlackStandIn
from bot.config import load_settings
from bot.sandbox import SandboxServer
from bot.server import BotRuntime

ASSISTANTS = 20
BUILDS = 50
COMMANDS = 400

# (label, file name ending, function name): cumulative CPU time per command of each.
PARTS = (
    ("bot's aiohttp handler: Bolt request, dispatch, response", "bot/server.py", "slack_events"),
    ("Bolt adapter: aiohttp request to Bolt request", "slack_bolt/adapter/aiohttp/__init__.py", "to_bolt_request"),
    ("Bolt: dispatch, middleware and listener", "slack_bolt/app/async_app.py", "async_dispatch"),
    ("Bolt: signature check", "slack_bolt/middleware/request_verification/async_request_verification.py", "async_process"),
    ("Bolt: per-request context and client", "slack_bolt/app/async_app.py", "_init_context"),
    ("bot: slash command listener", "bot/listeners.py", "on_command"),
)


async def run(profile: Profile) -> list[Table]:
    """Profile cache-miss and warm commands sent one at a time to an in-process bot."""
    count = profile.count(COMMANDS, 20)
    table = Table(
        "Where one command's CPU time goes, in-process, one command at a time (µs per command)",
        ["part", "cache miss", "warm, answered in the ack"],
    )
    async with SlackStandIn() as slack:
        dataset = build_bench_dataset(assistants=profile.count(ASSISTANTS, 2), builds=profile.count(BUILDS, 5))
        async with SandboxServer(dataset=dataset) as box:
            environment = {
                "AUTOPILOT_BASE_URL": box.base_url,
                "TWILIO_ACCOUNT_SID": box.credentials.account_sid,
                "TWILIO_AUTH_TOKEN": box.credentials.auth_token,
                "SLACK_API_URL": slack.api_url,
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "BUILDS_STATE_URL": "sqlite:///:memory:",
            }
            runtime = BotRuntime(load_settings(environment), socket_mode=False, host="127.0.0.1", port=0, run_alert_loops=False)
            await runtime.start()
            try:
                assert runtime.bound_port is not None
                misses = [f"{assistant['unique_name']} {build['sid']}" for assistant in dataset.assistants for build in dataset.builds[assistant["sid"]]]
                random.Random(2).shuffle(misses)
                warm = [assistant_name(0)] * count
                columns = [await _measure(runtime.bound_port, slack, texts[:count]) for texts in (misses, warm)]
            finally:
                await runtime.stop()

    (miss_wall, miss_cpu, miss_stats), (warm_wall, warm_cpu, warm_stats) = columns
    table.add("acknowledgement, wall clock p50, without the profiler", f"{miss_wall * 1e6:,.0f}", f"{warm_wall * 1e6:,.0f}")
    table.add("process CPU per command, without the profiler", f"{miss_cpu * 1e6:,.0f}", f"{warm_cpu * 1e6:,.0f}")
    for label, path, function in PARTS:
        table.add(label, _per_command(miss_stats, path, function, count), _per_command(warm_stats, path, function, count))
    table.notes.append(
        "Process CPU covers everything in the one process: the bot, the client, the Slack stand-in and, for a cache miss, "
        "the sandbox and the work after the acknowledgement (API request, rendering, response_url post)."
    )
    table.notes.append(
        "The profiled rows are cumulative and nest: the handler contains the Bolt rows, and Bolt's dispatch contains the listener. "
        "aiohttp's own HTTP parsing and response writing come on top of the handler."
    )
    return [table]


async def _measure(port: int, slack: SlackStandIn, texts: list[str]) -> tuple[float, float, pstats.Stats]:
    """Send half of `texts` one at a time without the profiler, for times and CPU per command, then the rest with it."""
    half = len(texts) // 2
    connection = Connection("127.0.0.1", port)
    try:
        progress(f"overhead: {half} commands without the profiler, {len(texts) - half} with it")
        cpu_before = time.process_time()
        plain = await _send_all(connection, slack, texts[:half])
        cpu = (time.process_time() - cpu_before) / half
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            await _send_all(connection, slack, texts[half:])
        finally:
            profiler.disable()
    finally:
        await connection.close()
    return percentile([sample.ack for sample in plain], 50), cpu, pstats.Stats(profiler)


async def _send_all(connection: Connection, slack: SlackStandIn, texts: Iterable[str]) -> list[Sample]:
    return [await send_command(connection, slack, text) for text in texts]


def _per_command(stats: pstats.Stats, path: str, function: str, count: int) -> str:
    profiled = count - count // 2
    seconds = sum(
        cumulative
        for (filename, _line, name), (_calls, _primitive, _total, cumulative, _callers) in stats.stats.items()  # type: ignore[attr-defined]
        if filename.endswith(path) and name == function
    )
    return f"{seconds / profiled * 1e6:,.0f}" if seconds else "n/a"


if __name__ == "__main__":
    sys.exit(script_main(run, __doc__.splitlines()[0]))
