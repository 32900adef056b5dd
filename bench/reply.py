"""Time from a command to its final reply, with a warm cache and with a cold one, the API at 100 ms.

Warm: every client asks for the same assistant, whose builds one command
cached before the clock started, so the bot replies in the acknowledgement.
Cold: every command requests an assistant not requested before, whose 50
builds fit one page, so the floor is one API round trip (100 ms) and the
reply comes through the response_url.
"""

from __future__ import annotations

import sys

from bench.common import Profile, progress, script_main
from bench.dataset import assistant_name
from bench.load import Results, cycle, loop_over, run_clients, send_command
from bench.client import Connection
from bench.procs import Kind, Sandbox, Server, sandbox, server_environment, servers
from bench.report import Table, ms, percentile, ratio
from bench.slack import SlackStandIn

LATENCY = 0.1
ASSISTANTS = 600
BUILDS = 50
# Distinct assistants per client in each cold cell, so 1 + 16 + 64 clients never repeat a lookup.
COLD_ROUNDS = {1: 60, 16: 6, 64: 3}


async def run(profile: Profile) -> list[Table]:
    """Measure warm and cold final-reply times of the bot and the baseline."""
    latency = profile.latency(LATENCY)
    async with SlackStandIn() as slack:
        async with sandbox(assistants=profile.count(ASSISTANTS, 20), builds=profile.count(BUILDS, 5), latency=latency) as box:
            async with servers(server_environment(box, slack)) as running:
                warm = await _warm(profile, box, slack, running)
                cold = await _cold(profile, box, slack, running)
    return [warm, cold]


async def _warm(profile: Profile, box: Sandbox, slack: SlackStandIn, running: dict[Kind, Server]) -> Table:
    table = Table(
        f"Final reply with a warm cache, API at {box.latency * 1000:g} ms (ms)",
        ["clients", "commands", "bot p50", "bot p99", "answered in ack (bot)", "baseline p50", "baseline p99", "p50 ratio", "p99 ratio"],
    )
    text = assistant_name(0)
    results: dict[Kind, dict[int, Results]] = {"bot": {}, "baseline": {}}
    for kind, process in running.items():
        connection = Connection("127.0.0.1", process.port)
        await send_command(connection, slack, text)
        await connection.close()
        for clients in profile.clients:
            rounds = profile.count(max(300 // clients, 5))
            progress(f"reply (warm): {kind}, {clients} clients, {rounds} commands each")
            results[kind][clients] = await run_clients(process.port, clients, loop_over(slack, cycle([text], rounds)), deadline=profile.seconds(20.0))

    for clients in profile.clients:
        bot, base = results["bot"][clients], results["baseline"][clients]
        table.add(
            clients,
            len(bot.samples),
            ms(bot.p(50, final=True)),
            ms(bot.p(99, final=True)),
            f"{bot.answered_in_ack()} of {len(bot.samples)}",
            ms(base.p(50, final=True)),
            ms(base.p(99, final=True)),
            ratio(base.p(50, final=True), bot.p(50, final=True)),
            ratio(base.p(99, final=True), bot.p(99, final=True)),
        )
    table.notes.append(f"Every command is `/builds {text}`; the bot's reply is the acknowledgement, the baseline's a response_url post after one API request.")
    return table


async def _cold(profile: Profile, box: Sandbox, slack: SlackStandIn, running: dict[Kind, Server]) -> Table:
    table = Table(
        f"Final reply with a cold cache, API at {box.latency * 1000:g} ms (ms; floor {box.latency * 1000:g} ms = one round trip)",
        ["clients", "commands", "bot p50", "bot p99", "bot overhead p50", "bot overhead p99", "baseline p50", "baseline p99", "p50 ratio", "p99 ratio"],
    )
    results: dict[Kind, dict[int, Results]] = {"bot": {}, "baseline": {}}
    for kind, process in running.items():
        # The warm table used bench-000, so cold lookups start at bench-001.
        first = 1
        for clients in profile.clients:
            rounds = profile.count(COLD_ROUNDS.get(clients, 3))
            names = [assistant_name(index) for index in range(first, first + clients * rounds)]
            first += clients * rounds
            progress(f"reply (cold): {kind}, {clients} clients, {rounds} commands each")
            work = loop_over(slack, cycle(names, rounds, stride=rounds), reply_timeout=profile.seconds(30.0))
            results[kind][clients] = await run_clients(process.port, clients, work, deadline=profile.seconds(30.0))

    for clients in profile.clients:
        bot, base = results["bot"][clients], results["baseline"][clients]
        overhead = [final - box.latency for final in bot.finals()]
        table.add(
            clients,
            len(bot.samples),
            ms(bot.p(50, final=True)),
            ms(bot.p(99, final=True)),
            ms(percentile(overhead, 50)),
            ms(percentile(overhead, 99)),
            ms(base.p(50, final=True)),
            ms(base.p(99, final=True)),
            ratio(base.p(50, final=True), bot.p(50, final=True)),
            ratio(base.p(99, final=True), bot.p(99, final=True)),
        )
    table.notes.append("Overhead is the final-reply time minus the floor: signature check, acknowledgement, request, parsing, rendering and the response_url post.")
    return table


if __name__ == "__main__":
    sys.exit(script_main(run, __doc__.splitlines()[0]))
