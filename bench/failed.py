"""Time to the final reply of `/builds failed` across 30 and 100 assistants, the API at 200 ms.

The bot discovers the assistants with `GET /v1/Assistants` (BUILDS_ASSISTANTS
unset), then reads each assistant's builds (50, one page each). The floor is
two round trips: discovery, then every assistant at once. The bot runs with
BUILDS_CACHE_TTL=0, so every round starts cold; identical lookups in flight
at the same moment are still shared. The baseline reads the assistants one
after another, so its time is about (1 + assistants) round trips.
"""

from __future__ import annotations

import sys

from bench.common import Profile, progress, script_main
from bench.load import Results, cycle, loop_over, run_clients
from bench.procs import Kind, Sandbox, sandbox, server, server_environment
from bench.report import Table, lower_bound_ratio, ms
from bench.slack import SlackStandIn

LATENCY = 0.2
SIZES = (30, 100)
BUILDS = 50
TEXT = "failed"


async def run(profile: Profile) -> list[Table]:
    """Measure `failed` for each size and client count, for the bot and the baseline."""
    latency = profile.latency(LATENCY)
    cap = profile.seconds(25.0, 3.0)
    table = Table(
        f"`/builds failed` across many assistants, API at {latency * 1000:g} ms (ms to the final reply)",
        ["assistants", "floor", "clients", "bot commands", "bot p50", "bot p99", "baseline commands", "baseline p50", "baseline p99", "p50 ratio"],
    )
    async with SlackStandIn() as slack:
        for size in SIZES:
            assistants = profile.count(size, size // 10)
            async with sandbox(assistants=assistants, builds=profile.count(BUILDS, 3), latency=latency) as box:
                for clients in profile.clients:
                    bot = await _cell("bot", box, slack, clients, profile.count(5 if clients == 1 else 3, 2), cap)
                    baseline_rounds = profile.count(2 if assistants * latency * 2 < cap else 1, 1)
                    base = await _cell("baseline", box, slack, clients, baseline_rounds, cap)
                    table.add(
                        assistants,
                        ms(2 * latency),
                        clients,
                        len(bot.samples),
                        ms(bot.p(50, final=True)),
                        ms(bot.p(99, final=True)),
                        f"{len(base.samples)} ({base.unanswered()} unanswered)",
                        ms(base.p(50, final=True), cap=cap),
                        ms(base.p(99, final=True), cap=cap),
                        lower_bound_ratio(base.p(50, final=True), bot.p(50, final=True), cap),
                    )
    table.notes.append(f"The baseline's wait for a reply is capped at {cap:g} s; a capped percentile shows as `> {cap * 1000:,.0f}`.")
    table.notes.append("The baseline runs listeners in Bolt's default pool of 5 threads, so beyond 5 clients its commands queue.")
    return [table]


async def _cell(kind: Kind, box: Sandbox, slack: SlackStandIn, clients: int, rounds: int, cap: float) -> Results:
    progress(f"failed: {kind}, {box.latency:g} s latency, {clients} clients, {rounds} rounds")
    environment = server_environment(box, slack, BUILDS_CACHE_TTL="0", BUILDS_STALE_MAX="0")
    async with server(kind, environment) as running:
        work = loop_over(slack, cycle([TEXT], rounds), reply_timeout=cap)
        return await run_clients(running.port, clients, work, deadline=cap)


if __name__ == "__main__":
    sys.exit(script_main(run, __doc__.splitlines()[0]))
