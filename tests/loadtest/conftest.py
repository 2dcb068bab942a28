"""Fixtures of the load-test kit's tests: real servers on free loopback ports."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from loadtest_helpers import run_cli
from support import NodeProcess, catalog_subsystems, write_keyring

from harness import child_env, free_port, repo_root, server_process

SAMPLE_CATALOG = repo_root() / "configs" / "catalog" / "shanghai.toml"


@pytest.fixture(scope="session")
def city_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sample catalog and a fresh development keyring for it."""
    d = tmp_path_factory.mktemp("city")
    catalog = d / "catalog.toml"
    catalog.write_text(SAMPLE_CATALOG.read_text())
    keyring = d / "keyring.toml"
    write_keyring(keyring, catalog_subsystems(catalog), citizen_key=secrets.token_hex(32))
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
    catalog, keyring = city_files
    d = tmp_path_factory.mktemp("gateway")
    node = NodeProcess(d, keyring, catalog=catalog,
                       node={"access_log": False}).start(timeout=60)
    try:
        url = node.url
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
    finally:
        node.stop()
