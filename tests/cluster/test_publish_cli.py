"""``python -m gateway catalog publish``: bad input is refused with a clear error, nothing
is published, and no traceback is shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from clusterkit import OWNER, catalog_text, operator_key, write_files
from support import free_port

from gateway.keyring import dev_keyring_text
from gateway.publish import Bundle, build_bundle, decode_bundle, encode_bundle, main
from gateway.tomlfile import ConfigError


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_bad_inputs_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cat, ring = write_files(tmp_path)
    url = f"nats://127.0.0.1:{free_port()}"
    code, err = run(capsys, str(tmp_path / "missing.toml"), "--servers", url)
    assert code == 2 and "missing.toml" in err and "file not found" in err

    code, err = run(capsys, str(cat), "--servers", "http://127.0.0.1:4222")
    assert code == 2 and "--servers" in err and "nats://" in err

    code, err = run(capsys, str(cat), "--servers", url, "--prefix", "a.b")
    assert code == 2 and "--prefix" in err

    code, err = run(capsys, str(cat))
    assert code == 2 and "--servers" in err

    bad = tmp_path / "bad.toml"
    bad.write_text(catalog_text().replace('sharing = "open"', 'sharing = "everyone"', 1))
    code, err = run(capsys, str(bad), "--servers", url)
    assert code == 2 and "nothing published" in err and "sharing" in err

    broken = tmp_path / "broken.toml"
    broken.write_text("instance = [")
    code, err = run(capsys, str(broken), "--servers", url)
    assert code == 2 and "invalid TOML" in err

    stranger = tmp_path / "stranger.toml"
    stranger.write_text(dev_keyring_text(["SH/GOV/x/unknown"]))
    code, err = run(capsys, str(cat), "--servers", url, "--keyring", str(stranger))
    assert code == 2 and "unknown subsystem" in err

    code, err = run(capsys, str(cat), "--servers", url, "--timeout", "1")
    assert code == 2 and "--operator-key FILE is required" in err and "nothing published" in err

    key, _public = operator_key(tmp_path)
    code, err = run(capsys, str(cat), "--servers", url, "--timeout", "1", "--operator-key", str(key))
    assert code == 1 and "cannot publish" in err and url in err

    key.chmod(0o644)
    code, err = run(capsys, str(cat), "--servers", url, "--operator-key", str(key))
    assert code == 2 and f"run `chmod 600 {key}`" in err and "nothing published" in err
    key.chmod(0o600)
    code, err = run(capsys, str(cat), "--servers", url, "--operator-key", str(tmp_path / "none.key"))
    assert code == 2 and "none.key: file not found" in err and "operator-key init" in err

    bare = tmp_path / "bare-keyring.toml"
    bare.write_text("\n".join(x for x in ring.read_text().splitlines() if not x.startswith("citizen_key")))
    code, err = run(capsys, str(cat), "--servers", url, "--keyring", str(bare), "--operator-key", str(key))
    assert code == 2 and f"{bare}: citizen_key: missing" in err


def test_bundle_round_trip_and_garbage(tmp_path: Path) -> None:
    cat, ring = write_files(tmp_path)
    bundle = build_bundle(cat, ring)
    catalog, keyring, back = decode_bundle(encode_bundle(bundle), "test")
    assert OWNER in catalog.subsystems and keyring is not None and keyring.for_client(OWNER)
    assert back.source == str(cat)
    for value in (b"", b"not zlib", encode_bundle(Bundle("instance = [")),
                  encode_bundle(Bundle(catalog_text(), keyring="[[keys]]\nid = 1\n"))):
        with pytest.raises(ConfigError):
            decode_bundle(value, "nats:test")
