"""Configuration of the node's secrets: the keyring's ``citizen_key`` and the trusted
operator keys (``[node] operator_keys`` / ``operator_keys_file``); bad values are refused
naming the file, the key and the reason, never echoing a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_node_config
from gateway.keyring import load_keyring
from gateway.operatorkey import generate, trusted_keys
from gateway.tomlfile import ConfigError

NODE = '[node]\ncatalog = "c.toml"\nkeyring = "k.toml"\n'
KEY = '[[keys]]\nid = "k1"\nclient = "SH/GOV/psb/hukou"\nsecret = "' + "ab" * 32 + '"\n'


@pytest.mark.parametrize("value, reason", [
    ('"abc"', "must be lower-case hex of 32 bytes or more"),
    ('"' + "AB" * 32 + '"', "must be lower-case hex"),
    ("42", "got `int`"),
])
def test_bad_citizen_key(write, expect_error, value: str, reason: str) -> None:
    err = expect_error(load_keyring, write(f"citizen_key = {value}\n" + KEY), "citizen_key", reason)
    assert "AB" * 32 not in str(err)


def test_citizen_key_loads(write) -> None:
    ring = load_keyring(write(f'citizen_key = "{"cd" * 32}"\n' + KEY))
    assert ring.citizen_key == bytes.fromhex("cd" * 32)
    assert load_keyring(write(KEY)).citizen_key is None


def test_operator_keys_inline_and_file(write, tmp_path: Path) -> None:
    one = generate(tmp_path / "one.key")
    two = generate(tmp_path / "two.key")
    (tmp_path / "ops.pub").write_text(f"# the operators\n{two}  # second\n\n")
    cfg = load_node_config(write(NODE + f'operator_keys = ["{one}"]\noperator_keys_file = "ops.pub"\n'))
    assert set(trusted_keys(cfg)) == {one, two}
    assert (tmp_path / "one.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("value, reason", [
    ('["rsa:AAAA"]', 'must be "ed25519:<base64 of 32 bytes>"'),
    ('["ed25519:not base64!"]', "not a base64 Ed25519 public key of 32 bytes"),
    ('["ed25519:AAAA"]', "not a base64 Ed25519 public key of 32 bytes"),
    ('"ed25519:AAAA"', "Expected `array`, got `str`"),
])
def test_bad_operator_keys(write, expect_error, value: str, reason: str) -> None:
    key = "node.operator_keys" if "array" in reason else "node.operator_keys[0]"
    expect_error(load_node_config, write(NODE + f"operator_keys = {value}\n"), key, reason)


def test_bad_operator_keys_file(write, tmp_path: Path) -> None:
    cfg = load_node_config(write(NODE + 'operator_keys_file = "missing.pub"\n'))
    with pytest.raises(ConfigError) as info:
        trusted_keys(cfg)
    assert info.value.key == "node.operator_keys_file" and "missing.pub: file not found" in str(info.value)
    (tmp_path / "bad.pub").write_text("ed25519:AAAA\n")
    cfg = load_node_config(write(NODE + 'operator_keys_file = "bad.pub"\n'))
    with pytest.raises(ConfigError) as info:
        trusted_keys(cfg)
    assert str(info.value).startswith(f"{tmp_path / 'bad.pub'}: line 1: ")
