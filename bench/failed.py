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
from bench.procs import Kind, Sandbox, sandbox, server_environment, servers
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
        ["assistants", "floor", "clients", "bot commands", "bot p50", "bot p99", "bot CPU per round", "sandbox CPU per round",
         "baseline commands", "baseline p50", "baseline p99", "p50 ratio"],
    )
    async with SlackStandIn() as slack:
        for size in SIZES:
            assistants = profile.count(size, size // 10)
            async with sandbox(assistants=assistants, builds=profile.count(BUILDS, 3), latency=latency) as box:
                for clients in profile.clients:
                    rounds: dict[Kind, int] = {
                        "bot": profile.count(5 if clients == 1 else 3, 2),
                        "baseline": profile.count(2 if assistants * latency * 2 < cap else 1, 1),
                    }
                    bot, base, bot_cpu, sandbox_cpu = await _cell(box, slack, clients, rounds, cap)
                    table.add(
                        assistants,
                        ms(2 * latency),
                        clients,
                        len(bot.samples),
                        ms(bot.p(50, final=True)),
                        ms(bot.p(99, final=True)),
                        ms(bot_cpu / rounds["bot"]),
                        ms(sandbox_cpu / rounds["bot"]),
                        f"{len(base.samples)} ({base.unanswered()} unanswered)",
                        ms(base.p(50, final=True), cap=cap),
                        ms(base.p(99, final=True), cap=cap),
                        lower_bound_ratio(base.p(50, final=True), bot.p(50, final=True), cap),
                    )
    table.notes.append(f"The baseline's wait for a reply is capped at {cap:g} s; a capped percentile shows as `> {cap * 1000:,.0f}`.")
    table.notes.append("The baseline runs listeners in Bolt's default pool of 5 threads, so beyond 5 clients its commands queue.")
    table.notes.append(
        "A round is one `failed` from every client at once. CPU per round is the CPU time of the bot process and of the "
        "sandbox process while the bot's cell ran, divided by its rounds; both share the 2 cores with the load generator."
    )
    return [table]


async def _cell(box: Sandbox, slack: SlackStandIn, clients: int, rounds: dict[Kind, int], cap: float) -> tuple[Results, Results, float, float]:
    """Return the bot's and the baseline's results, and the CPU seconds of the bot and the sandbox during the bot's run."""
    environment = server_environment(box, slack, BUILDS_CACHE_TTL="0", BUILDS_STALE_MAX="0")
    results: dict[Kind, Results] = {}
    # Fresh processes per cell: a baseline that fell behind would still be working through the last cell.
    async with servers(environment) as running:
        for kind, process in running.items():
            progress(f"failed: {kind}, {box.latency:g} s latency, {clients} clients, {rounds[kind]} rounds")
            cpu_before, sandbox_before = process.cpu_seconds(), box.cpu_seconds()
            work = loop_over(slack, cycle([TEXT], rounds[kind]), reply_timeout=cap)
            results[kind] = await run_clients(process.port, clients, work, deadline=cap)
            if kind == "bot":
                bot_cpu, sandbox_cpu = process.cpu_seconds() - cpu_before, box.cpu_seconds() - sandbox_before
    return results["bot"], results["baseline"], bot_cpu, sandbox_cpu


if __name__ == "__main__":
    sys.exit(script_main(run, __doc__.splitlines()[0]))
