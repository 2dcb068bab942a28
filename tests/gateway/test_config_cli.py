"""A broken configuration is refused by ``serve`` and ``check-config`` with a message naming
the file, the key and the reason, a non-zero exit status and no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gwkit import CATALOG, ROOT

GOOD_NODE = """[node]
listen = "127.0.0.1:{port}"
catalog = "{catalog}"
keyring = "{keyring}"
data_dir = "{data}"
"""


def run(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _node_text(tmp_path: Path, keyring: Path, port: int = 0) -> str:
    return GOOD_NODE.format(port=port, catalog=CATALOG, keyring=keyring, data=tmp_path / "data")


# (name, file text builder, the key the message must name, a word of the reason)
def _cases(tmp: Path, keyring: Path) -> list[tuple[str, str, str, str]]:
    good = _node_text(tmp, keyring)
    bad_keyring = tmp / "bad-keyring.toml"
    bad_keyring.write_text(
        '[[keys]]\nid = "k1"\nclient = "SH/GOV/nobody/none"\nsecret = "' + "ab" * 32 + '"\n'
    )
    short_keyring = tmp / "short-keyring.toml"
    short_keyring.write_text('[[keys]]\nid = "k1"\nclient = "SH/GOV/psb/hukou"\nsecret = "abc"\n')
    for ring in (bad_keyring, short_keyring):
        ring.chmod(0o600)  # (a keyring others may read is refused before its content is looked at)
    bad_catalog = tmp / "bad-catalog.toml"
    bad_catalog.write_text(
        CATALOG.read_text().replace('owner = "SH/GOV/psb/hukou"', 'owner = "SH/GOV/psb/nobody"', 1)
    )
    return [
        ("invalid toml", good + "this is = = not toml\n", "", "TOML"),
        ("unknown key", good + "colour = 1\n", "node.colour", "unknown"),
        ("unknown section", good + "[nodes]\nx = 1\n", "nodes", "unknown"),
        (
            "missing catalog",
            good.replace(f'catalog = "{CATALOG}"\n', ""),
            "node.catalog",
            "missing",
        ),
        (
            "listen not a string",
            good.replace('listen = "127.0.0.1:0"', "listen = 8080"),
            "node.listen",
            "str",
        ),
        (
            "listen without port",
            good.replace('listen = "127.0.0.1:0"', 'listen = "localhost"'),
            "node.listen",
            "host:port",
        ),
        (
            "max_inflight zero",
            good + "[limits]\nmax_inflight = 0\n",
            "limits.max_inflight",
            "between",
        ),
        (
            "max_body_bytes text",
            good + '[limits]\nmax_body_bytes = "big"\n',
            "limits.max_body_bytes",
            "int",
        ),
        (
            "batch over 1000",
            good + "[limits]\nmax_batch_records = 5000\n",
            "limits.max_batch_records",
            "between",
        ),
        ("unknown backend", good + '[store]\nbackend = "postgres"\n', "store.backend", "postgres"),
        (
            "tls cert alone",
            good.replace("[node]\n", '[node]\ntls_cert = "x.pem"\n'),
            "node.tls_cert",
            "together",
        ),
        (
            "tls files missing",
            good.replace(
                "[node]\n", f'[node]\ntls_cert = "{tmp}/none.crt"\ntls_key = "{tmp}/none.key"\n'
            ),
            "node.tls_cert",
            "not found",
        ),
        (
            "tls cert not a cert",
            good.replace(
                "[node]\n", f'[node]\ntls_cert = "{bad_keyring}"\ntls_key = "{bad_keyring}"\n'
            ),
            "node.tls_cert",
            "cannot load",
        ),
        ("catalog missing", good.replace(str(CATALOG), str(tmp / "nope.toml")), "", "not found"),
        (
            "keyring unknown client",
            good.replace(str(keyring), str(bad_keyring)),
            "keys[0].client",
            "unknown subsystem",
        ),
        (
            "keyring short secret",
            good.replace(str(keyring), str(short_keyring)),
            "keys[0].secret",
            "32 bytes",
        ),
        (
            "catalog unknown owner",
            good.replace(str(CATALOG), str(bad_catalog)),
            "resources[0].owner",
            "unknown subsystem",
        ),
    ]


@pytest.fixture(scope="module")
def broken_configs(
    tmp_path_factory: pytest.TempPathFactory, keyring_path: Path
) -> list[tuple[str, Path, str, str, str]]:
    tmp = tmp_path_factory.mktemp("configs")
    out = []
    for i, (name, text, key, reason) in enumerate(_cases(tmp, keyring_path)):
        path = tmp / f"bad-{i}.toml"
        path.write_text(text)
        named = {
            "catalog missing": str(tmp / "nope.toml"),
            "keyring unknown client": "bad-keyring.toml",
            "keyring short secret": "short-keyring.toml",
            "catalog unknown owner": "bad-catalog.toml",
        }
        out.append((name, path, named.get(name, str(path)), key, reason))
    return out


# serve and check-config share the loaders: serve runs one case of each kind of file.
SERVE_CASES = {
    "invalid toml",
    "unknown key",
    "max_inflight zero",
    "tls files missing",
    "catalog missing",
    "keyring unknown client",
    "catalog unknown owner",
}


@pytest.mark.parametrize("command", ["serve", "check-config"])
def test_broken_config_is_refused_clearly(broken_configs, command: str) -> None:
    if command == "serve":
        broken_configs = [c for c in broken_configs if c[0] in SERVE_CASES]
        assert len(broken_configs) == len(SERVE_CASES)

    def one(
        case: tuple[str, Path, str, str, str],
    ) -> tuple[str, subprocess.CompletedProcess[str], str, str, str]:
        name, path, file_named, key, reason = case
        args = (
            ("serve", "--config", str(path)) if command == "serve" else ("check-config", str(path))
        )
        return name, run(*args), file_named, key, reason

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, broken_configs))
    for name, proc, file_named, key, reason in results:
        err = proc.stderr
        assert proc.returncode not in (0, None), (name, proc.stdout, err)
        assert "Traceback" not in err and "Traceback" not in proc.stdout, (name, err)
        assert file_named in err, (name, err)
        if key:
            assert f": {key}:" in err, (name, key, err)
        assert reason.lower() in err.lower(), (name, reason, err)
        assert len(err.strip().splitlines()) <= 3, (name, err)


def test_missing_config_file(tmp_path: Path) -> None:
    for args in (
        ("serve", "--config", str(tmp_path / "none.toml")),
        ("check-config", str(tmp_path / "none.toml")),
    ):
        proc = run(*args)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert "none.toml" in proc.stderr and "not found" in proc.stderr


def test_good_config_checks_ok(tmp_path: Path, keyring_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(_node_text(tmp_path, keyring_path))
    proc = run("check-config", str(path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok:")


def test_port_in_use_is_refused_without_traceback(tmp_path: Path, keyring_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        path = tmp_path / "node.toml"
        path.write_text(_node_text(tmp_path, keyring_path, port))
        proc = run("serve", "--config", str(path))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"{path}: node.listen:" in proc.stderr and "in use" in proc.stderr.lower(), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # nothing was opened yet


def test_unresolvable_listen_host_is_refused(tmp_path: Path, keyring_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        _node_text(tmp_path, keyring_path).replace("127.0.0.1:0", "no-such-host.invalid:8080")
    )
    proc = run("serve", "--config", str(path))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"{path}: node.listen: cannot listen on no-such-host.invalid:8080" in proc.stderr, (
        proc.stderr
    )


def test_keyring_error_never_shows_the_secret(tmp_path: Path) -> None:
    secret = "AB" * 32  # upper-case hex: refused
    ring = tmp_path / "ring.toml"
    ring.write_text(f'[[keys]]\nid = "k1"\nclient = "SH/GOV/psb/hukou"\nsecret = "{secret}"\n')
    proc = run("check-config", "--kind", "keyring", str(ring))
    assert proc.returncode != 0 and "keys[0].secret" in proc.stderr
    assert secret not in proc.stderr + proc.stdout
    ring.write_text(
        f'[[keys]]\nid = "k1"\nclient = "SH/GOV/psb/hukou"\nsecret = "{secret.lower()}"\nsecret = "x"\n'
    )
    proc = run("check-config", "--kind", "keyring", str(ring))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert secret.lower() not in proc.stderr + proc.stdout
