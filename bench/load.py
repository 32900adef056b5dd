"""The load generator: concurrent clients sending signed slash commands and timing the replies.

Each client holds one keep-alive connection, opened before the clock starts,
and runs in a closed loop: send a command, read the acknowledgement, wait for
the final reply, then send the next. The final reply is the acknowledgement
itself when it carries the reply, otherwise the message posted to the
command's response_url. All clients start together, so the first commands
arrive at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bench.client import Connection
from bench.report import percentile
from bench.slack import SlackStandIn, reply_json, signed_command

# Slack shows the user an error when a command is not acknowledged within 3 seconds.
SLACK_ACK_LIMIT = 3.0
EVENTS_PATH = "/slack/events"
# A bound on every client loop. The deadline and the text source end the loops long before it.
MAX_COMMANDS_PER_CLIENT = 1_000_000


@dataclass(frozen=True, slots=True)
class Sample:
    """One command: seconds to the acknowledgement and to the final reply (`inf` if none within the wait)."""

    text: str
    ack: float
    final: float
    in_ack: bool
    status: int

    @property
    def acknowledged(self) -> bool:
        """Return whether Slack would have accepted the acknowledgement: HTTP 200 within 3 s."""
        return self.status == 200 and self.ack <= SLACK_ACK_LIMIT


@dataclass
class Results:
    """Every sample of one run and its wall-clock duration."""

    samples: list[Sample] = field(default_factory=list)
    elapsed: float = 0.0

    def acks(self) -> list[float]:
        """Return the acknowledgement times in seconds."""
        return [sample.ack for sample in self.samples]

    def finals(self) -> list[float]:
        """Return the final-reply times in seconds, `inf` for replies that never came within the wait."""
        return [sample.final for sample in self.samples]

    def p(self, pct: float, *, final: bool = False) -> float:
        """Return a percentile of the acknowledgement times, or of the final-reply times with `final`."""
        return percentile(self.finals() if final else self.acks(), pct)

    def failed_acks(self) -> int:
        """Return how many commands Slack would have reported as failed: not 200, or later than 3 s."""
        return sum(not sample.acknowledged for sample in self.samples)

    def unanswered(self) -> int:
        """Return how many commands got no final reply within the wait."""
        return sum(math.isinf(sample.final) for sample in self.samples)

    def answered_in_ack(self) -> int:
        """Return how many replies came in the acknowledgement itself."""
        return sum(sample.in_ack for sample in self.samples)


async def send_command(
    connection: Connection, slack: SlackStandIn, text: str, *, wait_reply: bool = True, reply_timeout: float = 30.0
) -> Sample:
    """Send `/builds <text>` signed like Slack, and time its acknowledgement and final reply."""
    url, arrival = slack.new_reply()
    body, headers = signed_command(text, response_url=url)

    sent = time.perf_counter()
    response = await connection.post(EVENTS_PATH, body, headers)
    acked = time.perf_counter()

    in_ack = response.status == 200 and reply_json(response.body) is not None
    final = acked - sent if in_ack else math.inf
    if not in_ack and wait_reply:
        try:
            final = await asyncio.wait_for(asyncio.shield(arrival), max(reply_timeout - (acked - sent), 0.0)) - sent
        except TimeoutError:
            final = math.inf
    slack.forget(url)
    return Sample(text, acked - sent, final, in_ack, response.status)


ClientWork = Callable[[int, Connection, float], Awaitable[list[Sample]]]


async def run_clients(port: int, clients: int, work: ClientWork, *, deadline: float) -> Results:
    """Run `clients` concurrent `work(index, connection, stop_at)` loops against `port`, started together.

    `deadline` is seconds from the start after which a client starts no new command.
    """
    connections = [Connection("127.0.0.1", port) for _ in range(clients)]
    await asyncio.gather(*(connection.get("/healthz") for connection in connections))

    started = time.perf_counter()
    stop_at = started + deadline
    try:
        per_client = await asyncio.gather(*(work(index, connection, stop_at) for index, connection in enumerate(connections)))
    finally:
        await asyncio.gather(*(connection.close() for connection in connections))
    elapsed = time.perf_counter() - started
    return Results([sample for samples in per_client for sample in samples], elapsed)


def loop_over(
    slack: SlackStandIn, texts: Callable[[int, int], str | None], *, wait_reply: bool = True, reply_timeout: float = 30.0
) -> ClientWork:
    """Return client work that sends `texts(client, round)` until it returns None or the deadline passes."""

    async def work(index: int, connection: Connection, stop_at: float) -> list[Sample]:
        samples: list[Sample] = []
        for round_number in range(MAX_COMMANDS_PER_CLIENT):
            text = texts(index, round_number)
            if text is None or time.perf_counter() >= stop_at:
                break
            samples.append(await send_command(connection, slack, text, wait_reply=wait_reply, reply_timeout=reply_timeout))
        return samples

    return work


def cycle(items: Sequence[str], count_per_client: int, *, stride: int = 0) -> Callable[[int, int], str | None]:
    """Return a text source giving each client `count_per_client` items, client `i` starting at `i * stride`."""

    def texts(client: int, round_number: int) -> str | None:
        if round_number >= count_per_client:
            return None
        return items[(client * stride + round_number) % len(items)]

    return texts
