"""Upstream requests per 100 commands for an incident mix: many people looking at the same two assistants.

Per 20 commands: 8 `bench-000`, 5 `bench-001`, 2 `bench-000 failed`,
1 `bench-001 failed`, 2 `failed`, 1 `failed 6h` and 1 lookup of one
build of bench-000, each client in its own shuffled order. `failed` covers
all 30 assistants. Requests are counted at the sandbox. Each bot cell starts
with an empty cache and lasts less than one cache TTL (30 s), so the bot
should make at most one request per distinct lookup: 32 here (the assistant
list, 30 build lists, one build).
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass

from bench.common import Profile, progress, script_main
from bench.dataset import assistant_name
from bench.load import Results, loop_over, run_clients
from bench.procs import Kind, Sandbox, sandbox, server_environment, servers
from bench.report import Table
from bench.slack import SlackStandIn

LATENCY = 0.1
ASSISTANTS = 30
BUILDS = 50
TTL = 30.0
BOT_COMMANDS = 320
BASELINE_COMMANDS = {1: 20, 16: 32, 64: 64}


def incident_mix(build_sid: str) -> list[str]:
    """Return 20 commands in the proportions of the incident mix."""
    first, second = assistant_name(0), assistant_name(1)
    return (
        [first] * 8
        + [second] * 5
        + [f"{first} failed"] * 2
        + [f"{second} failed", "failed", "failed", "failed 6h", f"{first} {build_sid}"]
    )


async def run(profile: Profile) -> list[Table]:
    """Count upstream requests of the bot and the baseline for the incident mix at each client count."""
    latency = profile.latency(LATENCY)
    table = Table(
        f"Upstream requests for the incident mix, API at {latency * 1000:g} ms",
        ["clients", "bot commands", "bot requests", "bot per 100 commands", "most requests for one lookup", "bot cell (s)",
         "baseline commands", "baseline per 100 commands", "ratio"],
    )
    async with SlackStandIn() as slack:
        async with sandbox(assistants=profile.count(ASSISTANTS, 3), builds=profile.count(BUILDS, 3), latency=latency) as box:
            build_sid = next(sid for name, sid in reversed(await box.targets()) if name == assistant_name(0))
            mix = incident_mix(build_sid)
            for clients in profile.clients:
                rounds: dict[Kind, int] = {
                    "bot": profile.count(max(BOT_COMMANDS // clients, 5)),
                    "baseline": profile.count(max(BASELINE_COMMANDS.get(clients, clients) // clients, 1), 1),
                }
                cells = await _cells(box, slack, mix, clients, rounds)
                bot, base = cells["bot"], cells["baseline"]
                table.add(
                    clients,
                    len(bot.results.samples),
                    bot.requests,
                    f"{bot.per_100():.1f}",
                    max(bot.paths.values(), default=0),
                    f"{bot.results.elapsed:.1f}",
                    len(base.results.samples),
                    f"{base.per_100():.1f}",
                    f"{base.per_100() / bot.per_100():.1f}x",
                )
    table.notes.append(f"Every bot cell lasted less than the {TTL:g} s TTL, so its requests are the requests of one TTL window.")
    table.notes.append("All clients send their first command at the same moment, into an empty cache.")
    return [table]


@dataclass
class _Cell:
    results: Results
    requests: int
    paths: dict[str, int]

    def per_100(self) -> float:
        return 100 * self.requests / len(self.results.samples)


async def _cells(box: Sandbox, slack: SlackStandIn, mix: list[str], clients: int, rounds: dict[Kind, int]) -> dict[Kind, _Cell]:
    orders = []
    for client in range(clients):
        order = list(mix)
        random.Random(client).shuffle(order)
        orders.append(order)

    cells: dict[Kind, _Cell] = {}
    # Fresh processes per cell, so the bot's cache starts empty.
    async with servers(server_environment(box, slack)) as running:
        for kind, process in running.items():
            progress(f"upstream: {kind}, {clients} clients, {rounds[kind]} commands each")
            await box.reset()
            texts = _texts(orders, rounds[kind])
            results = await run_clients(process.port, clients, loop_over(slack, texts, reply_timeout=30.0), deadline=60.0)
            if kind == "bot":
                if results.elapsed >= TTL:
                    raise RuntimeError(f"the bot cell took {results.elapsed:.1f} s, longer than one TTL ({TTL:g} s): use fewer commands")
                requests, paths = await box.request_count()
                cells[kind] = _Cell(results, requests, paths)
            else:
                cells[kind] = _Cell(results, 0, {})
    # The baseline's requests are read after it stopped, so commands it was still working on count too.
    requests, paths = await box.request_count()
    cells["baseline"] = _Cell(cells["baseline"].results, requests, paths)
    return cells


def _texts(orders: list[list[str]], rounds: int):
    def texts(client: int, round_number: int) -> str | None:
        order = orders[client]
        return order[round_number % len(order)] if round_number < rounds else None

    return texts


if __name__ == "__main__":
    sys.exit(script_main(run, __doc__.splitlines()[0]))
