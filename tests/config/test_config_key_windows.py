"""Key validity windows in the keyring (not_before / not_after) and ``keys rotate``'s rewrite:
bad values are refused with file: key: reason; the SDK picks the newest valid key."""

from __future__ import annotations

import datetime as dt

import pytest
from test_config_keyring import SECRET, key

from gateway.keyring import Keyring, load_keyring, rotate_text

T0 = dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp()


# fmt: off
@pytest.mark.parametrize("extra, bad_key, reason", [
    ("not_after = 2027-01-01T00:00:00\n", "keys[0].not_after", "must carry a time zone"),
    ("not_before = 2027-01-01T00:00:00\n", "keys[0].not_before", "must carry a time zone"),
    ("not_before = 2027-01-02T00:00:00Z\nnot_after = 2027-01-01T00:00:00Z\n", "keys[0].not_after",
     "must be after not_before"),
    ('not_after = "tomorrow"\n', "keys[0].not_after", "Invalid RFC3339 encoded datetime"),
    ("not_after = 2027-01-01\n", "keys[0].not_after", "Expected `datetime | null`, got `date`"),
])
# fmt: on
def test_bad_windows(write, expect_error, extra: str, bad_key: str, reason: str) -> None:
    err = expect_error(load_keyring, write(key() + extra, "keyring.toml"), bad_key, reason)
    assert SECRET not in str(err)


def test_rotation_rewrites_only_the_clients_keys(write) -> None:
    text = "# my ring\n" + key() + key("k-2", "SH/GOV/hrss/employment") + "# end\n"
    new_text, new_id, retired = rotate_text(text, "SH/GOV/psb/hukou", 86400, now=T0)
    assert retired == ["k-1"] and new_id == "k-sh-gov-psb-hukou-2"
    assert "# my ring" in new_text and "# end" in new_text
    ring: Keyring = load_keyring(write(new_text, "keyring.toml"))
    old, other, new = ring.by_id["k-1"], ring.by_id["k-2"], ring.by_id[new_id]
    assert old.not_after is not None and old.not_after.timestamp() == T0 + 86400
    assert other.not_after is None and new.not_before is not None and new.not_before.timestamp() == T0
    assert ring.for_client("SH/GOV/psb/hukou", now=T0 + 10).id == new_id
    assert old.valid_at(T0 + 86400) and not old.valid_at(T0 + 86401)
    assert not new.valid_at(T0 - 1)
    # Rotating again retires every current key of the client at the new overlap's end.
    again, third, retired2 = rotate_text(new_text, "SH/GOV/psb/hukou", 3600, now=T0 + 60)
    assert retired2 == ["k-1", new_id] and third.endswith("-3")
    ring2 = load_keyring(write(again, "keyring.toml"))
    assert ring2.by_id["k-1"].not_after.timestamp() == T0 + 3660
    assert ring2.for_client("SH/GOV/psb/hukou", now=T0 + 61).id == third
