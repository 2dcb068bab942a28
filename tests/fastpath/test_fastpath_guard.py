"""The compiled fast path must not silently fall back to the Python twins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastpath

ROOT = Path(__file__).resolve().parents[2]


def _implementation_with(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("GATEWAY_NO_EXTENSIONS", None)
    if env_value is not None:
        env["GATEWAY_NO_EXTENSIONS"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", "import fastpath; print(fastpath.IMPLEMENTATION)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def test_compiled_modules_are_loaded_unless_disabled() -> None:
    if fastpath.NO_EXTENSIONS:
        assert fastpath.IMPLEMENTATION == "python"
    else:
        assert fastpath.IMPLEMENTATION == "cython", (
            "GATEWAY_NO_EXTENSIONS is not set but fastpath fell back to the Python twins: "
            "the Cython extensions were not built (run `python setup.py build_ext --inplace`)"
        )


def test_public_names_come_from_the_selected_implementation() -> None:
    impl = fastpath.implementation(fastpath.IMPLEMENTATION)
    assert fastpath.RouteTable is impl.RouteTable
    assert fastpath.decode_batch is impl.decode_batch
    assert fastpath.project is impl.project


@pytest.mark.parametrize("value", ["1", "yes", "true"])
def test_environment_variable_forces_the_twins(value: str) -> None:
    assert _implementation_with(value) == "python"


@pytest.mark.parametrize("value", [None, "", "0"])
def test_environment_variable_unset_empty_or_zero_keeps_compiled(value: str | None) -> None:
    expected = fastpath.IMPLEMENTATION if not fastpath.NO_EXTENSIONS else None
    if expected is None:
        pytest.skip("GATEWAY_NO_EXTENSIONS is set: compiled modules are not expected")
    assert _implementation_with(value) == expected


def test_unknown_implementation_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fast path implementation 'rust'"):
        fastpath.implementation("rust")


def test_corrupt_batch_is_one_class(impl: fastpath.Implementation) -> None:
    assert impl.CorruptBatch is fastpath.CorruptBatch
    with pytest.raises(fastpath.CorruptBatch):
        impl.decode_batch(b"nope")


def test_missing_compiled_module_fails_the_suite_instead_of_skipping(tmp_path: Path) -> None:
    """With a compiled module unimportable, the guard fails and the cython param errors."""
    if fastpath.NO_EXTENSIONS:
        pytest.skip("GATEWAY_NO_EXTENSIONS is set: compiled modules are not expected")
    env = dict(os.environ)
    env.pop("GATEWAY_NO_EXTENSIONS", None)
    code = (
        "import sys; sys.modules['fastpath.codec'] = None; import pytest; "
        "sys.exit(pytest.main(sys.argv[1:]))"
    )
    guard = "tests/fastpath/test_fastpath_guard.py"
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "-q",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(tmp_path / "inner"),
            f"{guard}::test_compiled_modules_are_loaded_unless_disabled",
            f"{guard}::test_corrupt_batch_is_one_class",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0, out.stdout
    assert "FAILED " + guard + "::test_compiled_modules_are_loaded_unless_disabled" in out.stdout
    assert "ERROR " + guard + "::test_corrupt_batch_is_one_class[cython]" in out.stdout
    assert "the compiled fast path is missing" in out.stdout
    assert "skipped" not in out.stdout
