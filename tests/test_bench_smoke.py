"""Run every benchmark script in its tiny `--smoke` mode and check that each prints its table.

Nothing here checks a timing: the figures of a smoke run mean nothing.
"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

TABLE_TITLES = (
    "### Time to acknowledge a command",
    "### Final reply with a warm cache",
    "### Final reply with a cold cache",
    "### `/builds failed` across many assistants",
    "### Upstream requests for the incident mix",
    "### Warm commands per second",
    "### Resident memory",
    "### Where one command's CPU time goes",
)
SMOKE_TIMEOUT = 50


def test_bench_smoke_prints_every_table() -> None:
    """`python -m bench --smoke` runs every benchmark against real servers and prints its tables."""
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("Machine: "), result.stdout[:200]
    for title in TABLE_TITLES:
        assert title in result.stdout, f"{title!r} missing from:\n{result.stdout}"


def test_bench_unknown_name_is_rejected() -> None:
    """A benchmark name that does not exist fails with usage and the valid names."""
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "acks"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT
    )

    assert result.returncode == 2
    assert "unknown benchmark 'acks'" in result.stderr
    assert "throughput" in result.stderr
