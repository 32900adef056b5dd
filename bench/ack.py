"""Time to acknowledge a slash command, with the API at 0 ms and at 5 s latency.

Every command looks up a different build (`/builds bench-007 UG…`), so none is
in the cache: each one is acknowledged before its API request, and its reply
goes through the response_url. Clients wait for that reply before their next
command, so at 5 s latency each client has one lookup in flight.
"""

from __future__ import annotations

import random
import sys

from bench.common import Profile, progress, script_main
from bench.load import Results, cycle, loop_over, run_clients
from bench.procs import Kind, Sandbox, sandbox, server_environment, servers
from bench.report import Table, ms, ratio
from bench.slack import SlackStandIn

ASSISTANTS = 100
BUILDS = 100
LATENCIES = (0.0, 5.0)


async def run(profile: Profile) -> list[Table]:
    """Measure acknowledgement times of the bot and the baseline at each latency and client count."""
    table = Table(
        "Time to acknowledge a command (ms)",
        ["API latency", "clients", "commands", "bot p50", "bot p99", "baseline p50", "baseline p99", "p50 ratio", "p99 ratio", "failed acks bot / baseline"],
    )
    async with SlackStandIn() as slack:
        for nominal in LATENCIES:
            latency = profile.latency(nominal)
            async with sandbox(assistants=profile.count(ASSISTANTS, 5), builds=profile.count(BUILDS, 5), latency=latency) as box:
                texts = [f"{assistant} {build}" for assistant, build in await box.targets()]
                random.Random(1).shuffle(texts)
                for clients in profile.clients:
                    rounds = _rounds(profile, clients, latency)
                    bot, base = await _cell(box, slack, texts, clients, rounds, profile)
                    table.add(
                        f"{latency * 1000:g} ms",
                        clients,
                        len(bot.samples),
                        ms(bot.p(50)),
                        ms(bot.p(99)),
                        ms(base.p(50)),
                        ms(base.p(99)),
                        ratio(base.p(50), bot.p(50)),
                        ratio(base.p(99), bot.p(99)),
                        f"{bot.failed_acks()} / {base.failed_acks()}",
                    )
    table.notes.append("A failed ack is one Slack would reject: not HTTP 200, or later than 3 s. The baseline's Bolt returns 404 when its listener has not called ack() within 3 s.")
    table.notes.append("Percentiles are nearest-rank over every command of the cell; p99 of fewer than 100 commands is their maximum.")
    return [table]


def _rounds(profile: Profile, clients: int, latency: float) -> int:
    if profile.smoke:
        return 2
    if latency >= 1.0:
        return 4
    return max(320 // clients, 5)


async def _cell(box: Sandbox, slack: SlackStandIn, texts: list[str], clients: int, rounds: int, profile: Profile) -> tuple[Results, Results]:
    # Each client takes its own slice of builds, so no lookup repeats within a cell.
    source = cycle(texts, rounds, stride=rounds)
    reply_timeout = 3 * box.latency + profile.seconds(10.0, 2.0)
    results: dict[Kind, Results] = {}
    # Fresh processes per cell: a baseline that fell behind would still be working through the last cell.
    async with servers(server_environment(box, slack)) as running:
        for kind, process in running.items():
            progress(f"ack: {kind}, API latency {box.latency:g} s, {clients} clients, {rounds} commands each")
            work = loop_over(slack, source, reply_timeout=reply_timeout)
            results[kind] = await run_clients(process.port, clients, work, deadline=profile.seconds(30.0, 2.0))
    return results["bot"], results["baseline"]


if __name__ == "__main__":
    sys.exit(script_main(run, __doc__.splitlines()[0]))
