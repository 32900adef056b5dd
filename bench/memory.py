"""Resident memory of the server process with 10,000 builds of 100 assistants cached.

Steps, each followed by a reading of VmRSS from /proc/PID/status:
1. idle after start;
2. `/builds <assistant>` for each of the 100 assistants (100 builds each) and
   one `/builds failed`: 10,000 builds cached;
3. 3,000 lookups of distinct builds, more than the cache's 1,024 entries, to
   show the cache stops growing.
"""

from __future__ import annotations

import random
import sys

from bench.common import Profile, progress, script_main
from bench.dataset import assistant_name
from bench.load import cycle, loop_over, run_clients
from bench.procs import Server, sandbox, server_environment, servers
from bench.report import Table
from bench.slack import SlackStandIn

ASSISTANTS = 100
BUILDS = 100
DISTINCT_BUILDS = 3000


async def run(profile: Profile) -> list[Table]:
    """Read the RSS of the bot and the baseline after each step."""
    assistants, builds = profile.count(ASSISTANTS, 4), profile.count(BUILDS, 5)
    table = Table(
        f"Resident memory (MiB) with {assistants * builds:,} builds of {assistants} assistants cached",
        ["server", "idle after start", f"after {assistants * builds:,} builds cached", f"after {profile.count(DISTINCT_BUILDS, 10):,} more distinct lookups", "growth per cached build (bytes)"],
    )
    async with SlackStandIn() as slack:
        async with sandbox(assistants=assistants, builds=builds, latency=0.0) as box:
            targets = [f"{name} {sid}" for name, sid in await box.targets()]
            random.Random(3).shuffle(targets)
            async with servers(server_environment(box, slack)) as started:
                for kind, running in started.items():
                    idle, cached, flooded = await _readings(running, slack, assistants, targets[: profile.count(DISTINCT_BUILDS, 10)], max(profile.clients))
                    table.add(kind, f"{idle:.1f}", f"{cached:.1f}", f"{flooded:.1f}", f"{(cached - idle) * 1024 * 1024 / (assistants * builds):,.0f}")
    table.notes.append("RSS includes the interpreter and every imported library. The baseline caches nothing; its growth is allocator high-water from serving.")
    return [table]


async def _readings(running: Server, slack: SlackStandIn, assistants: int, distinct: list[str], clients: int) -> tuple[float, float, float]:
    idle = running.rss_mb()

    progress(f"memory: {running.kind}, caching the builds of {assistants} assistants")
    names = [assistant_name(index) for index in range(assistants)] + ["failed"]
    await _send_all(running, slack, names, clients)
    cached = running.rss_mb()

    progress(f"memory: {running.kind}, {len(distinct)} distinct build lookups")
    await _send_all(running, slack, distinct, clients)
    return idle, cached, running.rss_mb()


async def _send_all(running: Server, slack: SlackStandIn, texts: list[str], clients: int) -> None:
    per_client = -(-len(texts) // clients)
    results = await run_clients(running.port, clients, loop_over(slack, _slice(texts, per_client)), deadline=120.0)
    if results.unanswered():
        raise RuntimeError(f"the {running.kind} left {results.unanswered()} of {len(texts)} commands unanswered:\n{running.log_tail()}")


def _slice(items: list[str], per_client: int):
    source = cycle(items, per_client, stride=per_client)

    def texts(client: int, round_number: int) -> str | None:
        return source(client, round_number) if client * per_client + round_number < len(items) else None

    return texts


if __name__ == "__main__":
    sys.exit(script_main(run, __doc__.splitlines()[0]))
