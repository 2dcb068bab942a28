"""Helpers for the config tests: write a file, expect a ConfigError naming file, key and reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.tomlfile import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _expect_error(load: Callable[[Path], Any], path: Path, key: str, reason: str) -> ConfigError:
    """Call ``load(path)``; assert a ConfigError for ``path`` at ``key`` whose reason has ``reason``."""
    with pytest.raises(ConfigError) as info:
        load(path)
    err = info.value
    assert err.file == str(path)
    assert err.key == key, f"key {err.key!r} != {key!r} ({err})"
    assert reason in err.reason, f"{reason!r} not in {err.reason!r}"
    text = str(err)
    assert text.startswith(str(path))
    if key:
        assert f": {key}: " in text
    assert reason in text
    return err


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """``write(text, name="x.toml")`` writes a file into tmp_path and returns its path."""

    def _write(text: str | bytes, name: str = "config.toml") -> Path:
        p = tmp_path / name
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text, encoding="utf-8")
        return p

    return _write


@pytest.fixture
def expect_error() -> Callable[[Callable[[Path], Any], Path, str, str], ConfigError]:
    """``expect_error(load, path, key, reason)``: see :func:`_expect_error`."""
    return _expect_error
