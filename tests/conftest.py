"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder containing `multi30k/`: $AUTOMOE_DATA_DIR, else ../shared/data beside the repo."""
    if os.environ.get("AUTOMOE_DATA_DIR"):
        return Path(os.environ["AUTOMOE_DATA_DIR"])
    fallback = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if fallback.is_dir():
        return fallback
    pytest.skip("corpus not found: set AUTOMOE_DATA_DIR to the folder containing multi30k/")
