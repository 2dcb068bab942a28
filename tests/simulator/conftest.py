"""Fixtures of the simulator's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from sim_helpers import small, write


@pytest.fixture
def small_file(tmp_path: Path) -> Path:
    return write(tmp_path, small())
