"""Sandbox datasets of any size: `assistants` assistants with `builds` model builds each.

Assistants are named `bench-000`, `bench-001` and so on. Builds are 20 minutes
apart, the newest 20 minutes old, and about one in eight failed, so `failed 24h` finds
failures in every assistant that has more than a few builds.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from bot.sandbox_data import DEMO_ERROR_CODES, SandboxDataset, format_timestamp

BUILD_SPACING = timedelta(minutes=20)
FAILED_WEIGHT = 12
CANCELED_WEIGHT = 4


def assistant_name(index: int) -> str:
    """Return the unique name of the assistant at `index`."""
    return f"bench-{index:03d}"


def build_bench_dataset(*, assistants: int, builds: int, now: datetime | None = None, seed: int = 11) -> SandboxDataset:
    """Return a dataset of `assistants` assistants with `builds` builds each, the same for the same seed."""
    now = now or datetime.now(UTC)
    dataset = SandboxDataset(now=now, seed=seed)
    rng = random.Random(seed)

    for index in range(assistants):
        record = dataset.add_assistant(unique_name=assistant_name(index), friendly_name=f"Bench assistant {index}")
        for age in range(builds, 0, -1):
            _add_build(dataset, rng, record["sid"], created=now - age * BUILD_SPACING, number=builds - age + 1)
    return dataset


def _add_build(dataset: SandboxDataset, rng: random.Random, assistant_sid: str, *, created: datetime, number: int) -> None:
    roll = rng.randrange(100)
    if roll < FAILED_WEIGHT:
        status, error_code, duration = "failed", rng.choice(DEMO_ERROR_CODES), rng.randrange(20, 400)
    elif roll < FAILED_WEIGHT + CANCELED_WEIGHT:
        status, error_code, duration = "canceled", None, None
    else:
        status, error_code, duration = "completed", None, rng.randrange(60, 900)

    finished = created + timedelta(seconds=duration or 30)
    dataset.add_build(
        assistant_sid,
        status=status,
        unique_name=f"v{number}",
        date_created=format_timestamp(created),
        date_updated=format_timestamp(finished),
        build_duration=duration,
        error_code=error_code,
    )
