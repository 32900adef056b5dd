"""Parts shared by every benchmark script: the full and smoke profiles, the machine line and `main()`."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bench.report import Table


@dataclass(frozen=True, slots=True)
class Profile:
    """The size of a run: the client counts, and whether latencies, counts and time limits shrink for a smoke run."""

    smoke: bool
    clients: Sequence[int]

    def latency(self, seconds: float) -> float:
        """Return an API latency: as given in a full run, a hundredth of it in a smoke run."""
        return seconds / 100 if self.smoke else seconds

    def count(self, full: int, smoke: int = 2) -> int:
        """Return a command count: `full` in a full run, `smoke` in a smoke run."""
        return smoke if self.smoke else full

    def seconds(self, full: float, smoke: float = 2.0) -> float:
        """Return a time limit in seconds: `full` in a full run, `smoke` in a smoke run."""
        return smoke if self.smoke else full


FULL = Profile(smoke=False, clients=(1, 16, 64))
SMOKE = Profile(smoke=True, clients=(2,))

Benchmark = Callable[[Profile], Awaitable[list[Table]]]


def machine_line() -> str:
    """Return the cores, Python version, platform and date of this run."""
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0))
    return (
        f"Machine: {usable} usable cores ({cores} online), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def print_tables(tables: Sequence[Table]) -> None:
    """Print each table as Markdown, flushed so progress shows while the next benchmark runs."""
    for table in tables:
        print(table.markdown(), flush=True)


def script_main(benchmark: Benchmark, description: str, argv: Sequence[str] | None = None) -> int:
    """Parse `--smoke`, run `benchmark` with the matching profile and print its tables."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="run tiny and fast, to check that the script works")
    args = parser.parse_args(argv)
    print(machine_line(), flush=True)
    print_tables(asyncio.run(benchmark(SMOKE if args.smoke else FULL)))
    return 0


def progress(message: str) -> None:
    """Write a progress line to stderr, so stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)
