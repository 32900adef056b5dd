"""Run every benchmark in turn and print all tables: `python -m bench [--smoke] [NAME ...]`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from bench import ack, failed, memory, overhead, reply, throughput, upstream
from bench.common import FULL, SMOKE, Benchmark, machine_line, print_tables, progress

BENCHMARKS: dict[str, Benchmark] = {
    "ack": ack.run,
    "reply": reply.run,
    "failed": failed.run,
    "upstream": upstream.run,
    "throughput": throughput.run,
    "memory": memory.run,
    "overhead": overhead.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the named benchmarks, or all of them, and print their tables to stdout."""
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmarks of builds-bot beside a synchronous baseline.")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--smoke", action="store_true", help="run each benchmark tiny and fast, to check that it works")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}: choose from {', '.join(BENCHMARKS)}")

    profile = SMOKE if args.smoke else FULL
    print(machine_line(), flush=True)
    print(flush=True)
    for name in args.names or BENCHMARKS:
        started = time.monotonic()
        print_tables(asyncio.run(BENCHMARKS[name](profile)))
        progress(f"{name}: done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
