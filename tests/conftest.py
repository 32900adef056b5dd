"""Shared fixtures: paths to the reference material beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_ROOT = REPO_ROOT.parent / "shared"


def shared_file(*parts: str) -> Path:
    """Return a file of the reference folder beside the checkout, or skip the test."""
    path = SHARED_ROOT.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} is missing: this test needs the reference material in ../shared beside the checkout")
    return path
