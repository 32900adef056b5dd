"""Commands per second one bot process sustains with a warm cache.

Every client repeats `/builds bench-000` for a fixed time, each waiting for
the final reply before the next command. The bot replies from the cache, in
the acknowledgement. The baseline has no cache, so it makes one API request
per command, with the API at 0 ms in its favour. CPU seconds of the server
and of the load generator show how the two cores were shared.
"""

from __future__ import annotations

import sys
import time

from bench.client import Connection
from bench.common import Profile, progress, script_main
from bench.dataset import assistant_name
from bench.load import loop_over, run_clients, send_command
from bench.procs import sandbox, server_environment, servers
from bench.report import Table, ms
from bench.slack import SlackStandIn

BUILDS = 50
DURATION = 5.0


async def run(profile: Profile) -> list[Table]:
    """Measure sustained commands per second of the bot and the baseline at each client count."""
    table = Table(
        "Warm commands per second, one server process",
        ["server", "clients", "commands", "commands/s", "p50 (ms)", "p99 (ms)", "server CPU per command (ms)", "server CPU", "load generator CPU"],
    )
    text = assistant_name(0)
    rates: dict[tuple[str, int], float] = {}
    async with SlackStandIn() as slack:
        async with sandbox(assistants=2, builds=profile.count(BUILDS, 5), latency=0.0) as box:
            async with servers(server_environment(box, slack)) as started:
                for kind, running in started.items():
                    connection = Connection("127.0.0.1", running.port)
                    await send_command(connection, slack, text)
                    await connection.close()
                    for clients in profile.clients:
                        progress(f"throughput: {kind}, {clients} clients, {profile.seconds(DURATION, 0.3):g} s")
                        cpu_before, own_before = running.cpu_seconds(), time.process_time()
                        results = await run_clients(
                            running.port, clients, loop_over(slack, lambda _client, _round: text), deadline=profile.seconds(DURATION, 0.3)
                        )
                        cpu, own = running.cpu_seconds() - cpu_before, time.process_time() - own_before
                        count = len(results.samples)
                        rates[(kind, clients)] = count / results.elapsed
                        table.add(
                            kind,
                            clients,
                            count,
                            f"{count / results.elapsed:,.0f}",
                            ms(results.p(50, final=True)),
                            ms(results.p(99, final=True)),
                            f"{1000 * cpu / max(count, 1):.2f}",
                            f"{100 * cpu / results.elapsed:.0f}%",
                            f"{100 * own / results.elapsed:.0f}%",
                        )
    for clients in profile.clients:
        table.notes.append(f"{clients} clients: the bot handled {rates[('bot', clients)] / rates[('baseline', clients)]:.1f}x the baseline's commands per second.")
    table.notes.append("CPU shares are of one core: 100% is one core busy for the whole cell. The load generator includes the Slack stand-in.")
    return [table]


if __name__ == "__main__":
    sys.exit(script_main(run, __doc__.splitlines()[0]))
