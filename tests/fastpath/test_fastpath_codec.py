"""Record-batch codec: layout, round-trips, corruption detection, fuzzing and twin agreement."""

from __future__ import annotations

import struct

import msgspec
import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

import fastpath

RECORDS = [
    (1, 1_700_000_000_000, "k1", b'{"a":1}'),
    (5, 1_700_000_000_001, "中文", b"\x00\xff binary"),
    (9, -1, "", b""),
]

_records = st.lists(
    st.tuples(
        st.integers(-(2**63), 2**63 - 1),
        st.integers(-(2**63), 2**63 - 1),
        st.text(max_size=20).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
        st.binary(max_size=64),
    ),
    max_size=20,
)


def test_layout_is_as_documented(impl: fastpath.Implementation) -> None:
    buf = impl.encode_batch([(7, 8, "ké", b"xyz")])
    body = struct.pack("<qqII", 7, 8, 3, 3) + "ké".encode() + b"xyz"
    header = b"EXB1" + struct.pack("<BBIII", 1, 0, 1, len(body), crc32c(body))
    assert buf == header + body


def test_round_trip_and_count(impl: fastpath.Implementation) -> None:
    buf = impl.encode_batch(RECORDS)
    assert impl.decode_batch(buf) == RECORDS
    assert list(impl.iter_batch(buf)) == RECORDS
    assert impl.batch_count(buf) == 3
    assert impl.decode_batch(bytearray(buf)) == RECORDS
    assert impl.decode_batch(memoryview(buf)) == RECORDS
    assert impl.decode_batch(impl.encode_batch([])) == []


def test_payloads_are_bytes_that_msgspec_accepts(impl: fastpath.Implementation) -> None:
    [(_, _, _, payload)] = impl.decode_batch(impl.encode_batch([(1, 2, "k", b'{"x":[1,2]}')]))
    assert type(payload) is bytes
    assert msgspec.json.decode(payload) == {"x": [1, 2]}
    assert msgspec.json.encode({"d": msgspec.Raw(payload)}) == b'{"d":{"x":[1,2]}}'


def test_payload_may_be_any_bytes_like(impl: fastpath.Implementation) -> None:
    buf = impl.encode_batch([(1, 2, "k", bytearray(b"ab")), (3, 4, "k", memoryview(b"cd"))])
    assert [r[3] for r in impl.decode_batch(buf)] == [b"ab", b"cd"]


@pytest.mark.parametrize(
    ("after", "limit", "offsets"),
    [
        (-1, -1, [1, 5, 9]),
        (1, -1, [5, 9]),
        (4, -1, [5, 9]),
        (5, -1, [9]),
        (9, -1, []),
        (-1, 2, [1, 5]),
        (1, 1, [5]),
        (-1, 0, []),
        (2**70, -1, []),
        (-(2**70), 2**70, [1, 5, 9]),
    ],
)
def test_after_and_limit_select_records(
    impl: fastpath.Implementation, after: int, limit: int, offsets: list[int]
) -> None:
    buf = impl.encode_batch(RECORDS)
    assert [r[0] for r in impl.decode_batch(buf, after, limit)] == offsets


def test_after_and_limit_must_be_ints(impl: fastpath.Implementation) -> None:
    buf = impl.encode_batch(RECORDS)
    for after, limit in ((1.5, -1), ("1", -1), (-1, None), (True, -1)):
        with pytest.raises(TypeError, match="after and limit must be int"):
            impl.decode_batch(buf, after, limit)


def _corrupt_cases() -> list[tuple[str, bytes, str]]:
    good = fastpath.implementation("python").encode_batch(RECORDS)
    body = good[18:]

    def with_header(count: int = 3, body_: bytes = body, crc: int | None = None, v=1, f=0):
        c = crc32c(body_) if crc is None else crc
        return b"EXB1" + struct.pack("<BBIII", v, f, count, len(body_), c) + body_

    flipped = bytearray(good)
    flipped[30] ^= 0x01
    bad_key = struct.pack("<qqII", 1, 2, 2, 0) + b"\xff\xfe"
    long_key = struct.pack("<qqII", 1, 2, 100, 0) + b"ab"
    huge_payload = struct.pack("<qqII", 1, 2, 0, 0xFFFFFFFF) + b"ab"
    huge_key = struct.pack("<qqII", 1, 2, 0xFFFFFFFF, 0xFFFFFFFF)
    return [
        ("empty", b"", "truncated batch: 0 bytes"),
        ("short header", good[:17], "truncated batch: 17 bytes"),
        ("bad magic", b"EXB0" + good[4:], "bad magic"),
        ("bad version", with_header(v=2), "unsupported batch version 2"),
        ("bad flags", with_header(f=1), "unknown batch flags 0x01"),
        ("truncated body", good[:-1], "truncated batch: header says"),
        ("trailing garbage", good + b"\x00", "trailing garbage: 1 bytes after"),
        ("bit flip", bytes(flipped), "CRC-32C mismatch"),
        ("wrong crc", with_header(crc=crc32c(body) ^ 1), "CRC-32C mismatch"),
        ("count too high", with_header(count=4), "record #3: header runs past the end"),
        ("count too low", with_header(count=2), "trailing garbage"),
        ("count huge", with_header(count=2**32 - 1), "record #3: header runs past"),
        ("key not UTF-8", with_header(1, bad_key), "record #0: key is not valid UTF-8"),
        ("key runs past end", with_header(1, long_key), "record #0: key/payload lengths run"),
        ("payload 4 GiB", with_header(1, huge_payload), "record #0: key/payload lengths run"),
        ("key+payload 8 GiB", with_header(1, huge_key), "record #0: key/payload lengths run"),
        ("empty body count 1", with_header(1, b""), "record #0: header runs past"),
        ("garbage, count 0", with_header(0, b"xx"), "trailing garbage: 2 bytes after the 0"),
    ]


@pytest.mark.parametrize(("name", "buf", "message"), _corrupt_cases(), ids=lambda v: str(v)[:20])
def test_corrupt_batches_raise_corrupt_batch(
    impl: fastpath.Implementation, name: str, buf: bytes, message: str
) -> None:
    with pytest.raises(fastpath.CorruptBatch, match=message.replace("#", "#")):
        impl.decode_batch(buf)
    with pytest.raises(fastpath.CorruptBatch):
        list(impl.iter_batch(buf))


def test_batch_count_checks_header_and_length(impl: fastpath.Implementation) -> None:
    good = impl.encode_batch(RECORDS)
    for bad in (b"", good[:-1], good + b"x", b"EXB0" + good[4:]):
        with pytest.raises(fastpath.CorruptBatch):
            impl.batch_count(bad)


def test_non_bytes_input_is_a_type_error(impl: fastpath.Implementation) -> None:
    for bad in ("EXB1", None, 12, [1, 2]):
        with pytest.raises(TypeError, match="batch must be"):
            impl.decode_batch(bad)


@pytest.mark.parametrize(
    ("records", "error", "message"),
    [
        ([(1, 2, "k")], TypeError, r"record #0: expected a tuple"),
        ([[1, 2, "k", b""]], TypeError, r"record #0: expected a tuple"),
        ([(1, 2, "k", b""), (2**63, 2, "k", b"")], ValueError, r"record #1: offset"),
        ([(1.0, 2, "k", b"")], ValueError, r"record #0: offset 1.0 is not a 64-bit int"),
        ([(True, 2, "k", b"")], ValueError, r"record #0: offset True"),
        ([(1, -(2**63) - 1, "k", b"")], ValueError, r"record #0: ts_ms"),
        ([(1, 2, b"k", b"")], TypeError, r"record #0: key must be str, not bytes"),
        ([(1, 2, "k", "payload")], TypeError, r"record #0: payload must be bytes, not str"),
        ([(1, 2, "\ud800", b"")], ValueError, r"record #0: key is not encodable as UTF-8"),
    ],
)
def test_encode_refuses_bad_records(
    impl: fastpath.Implementation, records: list, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        impl.encode_batch(records)


def test_encode_accepts_any_sequence(impl: fastpath.Implementation) -> None:
    assert impl.encode_batch(tuple(RECORDS)) == impl.encode_batch(RECORDS)
    assert impl.encode_batch(r for r in RECORDS) == impl.encode_batch(RECORDS)


# ---- property tests -----------------------------------------------------------------


@settings(settings.get_profile("fastpath"), max_examples=200)
@given(records=_records, after=st.integers(-(2**64), 2**64), limit=st.integers(-2, 25))
def test_round_trip_and_agreement(pair, records, after: int, limit: int) -> None:
    cy, py = pair
    buf = cy.encode_batch(records)
    assert buf == py.encode_batch(records)
    assert cy.decode_batch(buf, -(2**63) - 1) == records
    assert cy.decode_batch(buf) == [r for r in records if r[0] >= 0]  # default after=-1
    assert list(cy.iter_batch(buf)) == list(py.iter_batch(buf)) == records
    expected = py.decode_batch(buf, after, limit)
    assert cy.decode_batch(buf, after, limit) == expected
    selected = [r for r in records if r[0] > after]
    assert expected == (selected if limit < 0 else selected[:limit])
    assert cy.batch_count(buf) == py.batch_count(buf) == len(records)


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except fastpath.CorruptBatch as exc:
        return ("corrupt", str(exc))


@settings(settings.get_profile("fastpath"), max_examples=400)
@given(data=st.binary(max_size=200))
def test_random_bytes_only_raise_corrupt_batch(pair, data: bytes) -> None:
    cy, py = pair
    for candidate in (data, b"EXB1\x01\x00" + data):
        assert _outcome(cy.decode_batch, candidate) == _outcome(py.decode_batch, candidate)
        assert _outcome(cy.batch_count, candidate) == _outcome(py.batch_count, candidate)


@settings(settings.get_profile("fastpath"), max_examples=300)
@given(records=_records.filter(bool), data=st.data())
def test_mutated_batches_are_detected_or_exact(pair, records, data) -> None:
    """Any single-byte change, cut or extension is caught (CRC-32C catches every 1-byte error)."""
    cy, py = pair
    buf = bytearray(py.encode_batch(records))
    kind = data.draw(st.sampled_from(["flip", "cut", "extend"]))
    if kind == "flip":
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] ^= data.draw(st.integers(1, 255))
    elif kind == "cut":
        del buf[data.draw(st.integers(0, len(buf) - 1)) :]
    else:
        buf += data.draw(st.binary(min_size=1, max_size=8))
    for impl in (cy, py):
        with pytest.raises(fastpath.CorruptBatch):
            impl.decode_batch(bytes(buf))


@settings(settings.get_profile("fastpath"), max_examples=200)
@given(records=_records, cut=st.integers(0, 400))
def test_recrc_structural_damage_is_caught(pair, records, cut: int) -> None:
    """A body damaged and re-signed with a valid CRC still never decodes silently wrong."""
    cy, py = pair
    good = py.encode_batch(records)
    body = good[18:][: cut % (len(good) - 17)]
    count = len(records)
    buf = b"EXB1" + struct.pack("<BBIII", 1, 0, count, len(body), crc32c(body)) + body
    results = {_outcome_repr(impl.decode_batch, buf) for impl in (cy, py)}
    assert len(results) == 1
    (result,) = results
    if result[0] == "ok":
        assert len(body) == len(good) - 18  # only the intact batch decodes


def _outcome_repr(fn, *args):
    kind, value = _outcome(fn, *args)
    return (kind, repr(value))
