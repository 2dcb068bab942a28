"""Fixtures of the load-test kit's tests: real servers on free loopback ports."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from loadtest_helpers import run_cli

from harness import child_env, free_port, server_process

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CATALOG = ROOT / "configs" / "catalog" / "shanghai.toml"


@pytest.fixture(scope="session")
def city_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sample catalog and a fresh development keyring for it."""
    from gateway.catalog import load_catalog
    from gateway.keyring import dev_keyring_text

    d = tmp_path_factory.mktemp("city")
    catalog = d / "catalog.toml"
    catalog.write_text(SAMPLE_CATALOG.read_text())
    keyring = d / "keyring.toml"
    keyring.write_text(dev_keyring_text(list(load_catalog(catalog).subsystems)))
    keyring.chmod(0o600)
    return catalog, keyring


@pytest.fixture(scope="session")
def hello_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bare aiohttp hello server (bench.baseline) on a free port."""
    port = free_port()
    log = tmp_path_factory.mktemp("hello") / "hello.log"
    with server_process(
        [sys.executable, "-m", "bench.baseline", "hello", "--listen", f"127.0.0.1:{port}"],
        f"http://127.0.0.1:{port}/healthz",
        env=child_env(),
        log=log,
    ):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def gateway_url(
    tmp_path_factory: pytest.TempPathFactory, city_files: tuple[Path, Path]
) -> Iterator[str]:
    """A real gateway node (``python -m gateway serve``) on the sample catalog, seeded."""
    if (
        not (ROOT / "gateway" / "app.py").exists()
        or not (ROOT / "gateway" / "__main__.py").exists()
    ):
        pytest.skip("the gateway node is not there yet")
    catalog, keyring = city_files
    d = tmp_path_factory.mktemp("gateway")
    port = free_port()
    node = d / "node.toml"
    node.write_text(
        "[node]\n"
        f'listen = "127.0.0.1:{port}"\n'
        f'catalog = "{catalog}"\n'
        f'keyring = "{keyring}"\n'
        f'data_dir = "{d / "data"}"\n'
        'log_level = "warning"\n'
        "access_log = false\n"
    )
    with server_process(
        [sys.executable, "-m", "gateway", "serve", "--config", str(node)],
        f"http://127.0.0.1:{port}/readyz",
        env=child_env(),
        log=d / "gateway.log",
        timeout_s=60,
    ):
        url = f"http://127.0.0.1:{port}"
        res = run_cli(
            "seed",
            "--host",
            url,
            "--keyring",
            str(keyring),
            "--catalog",
            str(catalog),
            "--citizens",
            "200",
        )
        assert res.returncode == 0, res.stderr
        yield url
