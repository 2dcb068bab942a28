"""One CLI for the benches; the old names forward to it; the product's CLIs never import it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness import child_env, repo_root


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                          cwd=repo_root(), env={**os.environ, **child_env()})


def test_bench_lists_every_bench() -> None:
    r = _run("-m", "bench", "--help")
    assert r.returncode == 0
    for name in ("gateway", "fastpath", "stores", "cluster", "services", "simulator"):
        assert name in r.stdout


@pytest.mark.parametrize("name", ["gateway", "fastpath", "stores", "cluster", "services", "simulator"])
def test_each_bench_has_help(name: str) -> None:
    r = _run("-m", "bench", name, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: python -m bench {name}")


def test_unknown_bench_is_a_clear_error() -> None:
    r = _run("-m", "bench", "everything")
    assert r.returncode == 2 and "unknown bench 'everything'" in r.stderr


@pytest.mark.parametrize(("old", "new"), [(("loadtest", "bench"), "gateway"),
                                          (("simulator", "bench"), "simulator")])
def test_old_names_forward_to_the_bench(old: tuple[str, str], new: str) -> None:
    r = _run("-m", *old, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: python -m bench {new}")


def test_fastpath_points_to_the_new_name() -> None:
    r = _run("-m", "fastpath", "bench", "--quick")
    assert r.returncode == 2
    assert "python -m bench fastpath --quick" in r.stderr
