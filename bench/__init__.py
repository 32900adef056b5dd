"""Load benchmarks of the bot in HTTP mode against the sandbox API, each beside a synchronous baseline.

Run every benchmark with `python -m bench`, or one with `python -m bench.ack`;
`--smoke` runs each one tiny and fast. BENCHMARKS.md describes the method and
the figures.
"""
