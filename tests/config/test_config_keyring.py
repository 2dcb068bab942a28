"""Keyring files: bad keys are refused with the file, the key and the reason; secrets never shown."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.keyring import Keyring, dev_keyring_text, load_keyring, write_private
from gateway.tomlfile import ConfigError

SECRET = "ab" * 32


def key(kid: str = "k-1", client: str = "SH/GOV/psb/hukou", secret: str = SECRET) -> str:
    return f'[[keys]]\nid = "{kid}"\nclient = "{client}"\nsecret = "{secret}"\n'


def test_good_keyring_loads(write) -> None:
    ring = load_keyring(write(key() + key("k-2", "SH/GOV/hrss/employment", "0" * 80)))
    assert set(ring.by_id) == {"k-1", "k-2"}
    assert ring.for_client("SH/GOV/hrss/employment").id == "k-2"
    assert ring.for_client("SH/GOV/nobody/x") is None
    ring.check_clients({"SH/GOV/psb/hukou", "SH/GOV/hrss/employment"})


def test_empty_keyring_loads(write) -> None:
    assert load_keyring(write("# no keys yet\n")).by_id == {}


# fmt: off
@pytest.mark.parametrize(
    "text, bad_key, reason",
    [
        (key(secret="ab" * 31), "keys[0].secret", "lower-case hex of 32 bytes or more"),
        (key(secret=""), "keys[0].secret", "32 bytes or more"),
        (key(secret="ab" * 32 + "c"), "keys[0].secret", "an even number of digits"),
        (key(secret="xy" * 32), "keys[0].secret", "lower-case hex"),
        (key(secret="AB" * 32), "keys[0].secret", "lower-case hex"),
        (key(secret="ab" * 32 + " "), "keys[0].secret", "lower-case hex"),
        (key() + key("k-1", "SH/GOV/hrss/employment"), "keys[1].id", "duplicate key id 'k-1'"),
        (key(kid="k 1"), "keys[0].id", "invalid key id 'k 1'"),
        (key(kid=""), "keys[0].id", "invalid key id ''"),
        (key(kid="k/1"), "keys[0].id", "invalid key id"),
        (key() + 'note = "x"\n', "keys[0].note", "unknown key"),
        ('version = 1\n' + key(), "version", "unknown key"),
        ('[[keys]]\nid = "k-1"\nsecret = "' + SECRET + '"\n', "keys[0].client", "required key is missing"),
        ('[[keys]]\nid = "k-1"\nclient = "SH/GOV/psb/hukou"\n', "keys[0].secret", "required key is missing"),
        ('[[keys]]\nid = 1\nclient = "a"\nsecret = "' + SECRET + '"\n', "keys[0].id", "Expected `str`, got `int`"),
        ('keys = "k-1"\n', "keys", "Expected `array`, got `str`"),
    ],
)
# fmt: on
def test_bad_keyring(write, expect_error, text: str, bad_key: str, reason: str) -> None:
    err = expect_error(load_keyring, write(text, "keyring.toml"), bad_key, reason)
    assert SECRET not in str(err)


def test_keyring_syntax_error(write, expect_error) -> None:
    expect_error(load_keyring, write(key() + "[[keys]\n", "keyring.toml"), "", "invalid TOML")


def test_keyring_not_found(tmp_path: Path, expect_error) -> None:
    expect_error(load_keyring, tmp_path / "keyring.toml", "", "file not found")


def test_keyring_non_utf8(write, expect_error) -> None:
    expect_error(load_keyring, write(b"# \xc3\x28\n", "keyring.toml"), "", "not UTF-8")


def test_check_clients_refuses_unknown_subsystem(write) -> None:
    path = write(key() + key("k-2", "SH/GOV/tax/iit"), "keyring.toml")
    ring = load_keyring(path)
    with pytest.raises(ConfigError) as info:
        ring.check_clients({"SH/GOV/psb/hukou"})
    assert info.value.file == str(path)
    assert info.value.key == "keys[1].client"
    assert "unknown subsystem 'SH/GOV/tax/iit'" in info.value.reason


def test_key_repr_hides_the_secret(write) -> None:
    ring = load_keyring(write(key(), "keyring.toml"))
    assert SECRET not in repr(ring.by_id["k-1"])
    assert SECRET not in repr(list(ring.by_id.values()))


def test_keyring_from_objects_names_its_source() -> None:
    from gateway.keyring import Key

    with pytest.raises(ConfigError) as info:
        Keyring([Key("k-1", "SH/GOV/psb/hukou", "00")], source="kv:keys")
    assert str(info.value).startswith("kv:keys: keys[0].secret: ")


def test_dev_keyring_round_trip(tmp_path: Path) -> None:
    clients = ["SH/GOV/psb/hukou", "SH/GOV/bdc/portal"]
    path = tmp_path / "sub" / "keyring.dev.toml"
    write_private(path, dev_keyring_text(clients))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring = load_keyring(path)
    ring.check_clients(set(clients))
    assert sorted(k.client for k in ring.by_id.values()) == sorted(clients)
    other = dev_keyring_text(clients)
    assert ring.by_id["k-sh-gov-psb-hukou"].secret not in other  # fresh secrets every time
