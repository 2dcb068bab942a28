"""Pure-Python record-batch codec: the specification of ``fastpath.codec``.

Layout (all integers little-endian)::

    header (18 bytes)
      magic      4 bytes   b"EXB1"
      version    u8        1
      flags      u8        0 (reserved; any other value is refused)
      count      u32       number of records
      body_len   u32       bytes after the header
      crc        u32       CRC-32C (Castagnoli) of the body
    body: count records, each
      offset     i64
      ts_ms      i64
      key_len    u32
      payload_len u32
      key        key_len bytes, UTF-8
      payload    payload_len bytes, opaque

The buffer must hold exactly header + body: a short buffer, a length running past the
end, bytes left over, a wrong magic/version/flags, a CRC mismatch or a key that is not
valid UTF-8 raise ``CorruptBatch``. The whole batch is checked before anything is
returned, whatever ``after``/``limit`` select. Payloads are returned as ``bytes`` copies.
``decode_batch`` keeps records with ``offset > after`` (the default ``after=-1`` keeps every
non-negative offset); ``iter_batch`` yields every record.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence

from crc32c import crc32c

from fastpath._errors import CorruptBatch

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER_SIZE",
    "encode_batch",
    "decode_batch",
    "iter_batch",
    "batch_count",
]

MAGIC = b"EXB1"
VERSION = 1
HEADER_SIZE = 18
_ALL = -(2**63) - 1  # an ``after`` below every 64-bit offset
RECORD_HEAD_SIZE = 24
_HEADER = struct.Struct("<4sBBIII")
_RECORD = struct.Struct("<qqII")
_U32_MAX = 0xFFFFFFFF
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1

Record = tuple[int, int, str, bytes]


def encode_batch(records: Sequence[tuple[int, int, str, bytes]]) -> bytes:
    """Frame ``(offset, ts_ms, key, payload)`` records as one batch."""
    parts: list[bytes] = []
    count = 0
    for i, record in enumerate(records):
        if not isinstance(record, tuple) or len(record) != 4:
            raise TypeError(f"record #{i}: expected a tuple (offset, ts_ms, key, payload)")
        offset, ts_ms, key, payload = record
        if type(offset) is not int or not _I64_MIN <= offset <= _I64_MAX:
            raise ValueError(f"record #{i}: offset {offset!r} is not a 64-bit int")
        if type(ts_ms) is not int or not _I64_MIN <= ts_ms <= _I64_MAX:
            raise ValueError(f"record #{i}: ts_ms {ts_ms!r} is not a 64-bit int")
        if not isinstance(key, str):
            raise TypeError(f"record #{i}: key must be str, not {type(key).__name__}")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"record #{i}: payload must be bytes, not {type(payload).__name__}")
        try:
            key_bytes = key.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"record #{i}: key is not encodable as UTF-8") from None
        payload_bytes = bytes(payload)
        if len(key_bytes) > _U32_MAX or len(payload_bytes) > _U32_MAX:
            raise ValueError(f"record #{i}: key or payload longer than 4 GiB")
        parts.append(_RECORD.pack(offset, ts_ms, len(key_bytes), len(payload_bytes)))
        parts.append(key_bytes)
        parts.append(payload_bytes)
        count += 1
    body = b"".join(parts)
    if count > _U32_MAX or len(body) > _U32_MAX:
        raise ValueError("batch larger than 4 GiB or 2**32-1 records")
    return _HEADER.pack(MAGIC, VERSION, 0, count, len(body), crc32c(body)) + body


def _check_header(buf: bytes | bytearray | memoryview) -> tuple[memoryview, int]:
    """Check magic, version, flags and length; return (view, count)."""
    try:
        view = memoryview(buf).cast("B")
    except TypeError:
        raise TypeError(f"batch must be bytes-like, not {type(buf).__name__}") from None
    size = len(view)
    if size < HEADER_SIZE:
        raise CorruptBatch(f"truncated batch: {size} bytes, the header alone needs {HEADER_SIZE}")
    magic, version, flags, count, body_len, _crc = _HEADER.unpack_from(view, 0)
    if magic != MAGIC:
        raise CorruptBatch(f"bad magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise CorruptBatch(f"unsupported batch version {version}, expected {VERSION}")
    if flags != 0:
        raise CorruptBatch(f"unknown batch flags 0x{flags:02x}")
    if HEADER_SIZE + body_len > size:
        raise CorruptBatch(
            f"truncated batch: header says {body_len} body bytes, only {size - HEADER_SIZE} present"
        )
    if HEADER_SIZE + body_len < size:
        raise CorruptBatch(
            f"trailing garbage: {size - HEADER_SIZE - body_len} bytes after the {body_len}-byte body"
        )
    return view, count


def batch_count(buf: bytes | bytearray | memoryview) -> int:
    """The number of records in a batch, from its header (magic and length are checked)."""
    return _check_header(buf)[1]


def decode_batch(
    buf: bytes | bytearray | memoryview, after: int = -1, limit: int = -1
) -> list[tuple[int, int, str, bytes]]:
    """Decode a batch; keep records with offset > ``after``, at most ``limit`` (< 0 = all)."""
    if type(after) is not int or type(limit) is not int:
        raise TypeError("after and limit must be int")
    view, count = _check_header(buf)
    crc = _HEADER.unpack_from(view, 0)[5]
    body = view[HEADER_SIZE:]
    actual = crc32c(body)
    if actual != crc:
        raise CorruptBatch(f"CRC-32C mismatch: header 0x{crc:08x}, body 0x{actual:08x}")
    end = len(view)
    pos = HEADER_SIZE
    out: list[Record] = []
    for i in range(count):
        if pos + RECORD_HEAD_SIZE > end:
            raise CorruptBatch(f"record #{i}: header runs past the end of the batch")
        offset, ts_ms, key_len, payload_len = _RECORD.unpack_from(view, pos)
        pos += RECORD_HEAD_SIZE
        if pos + key_len + payload_len > end:
            raise CorruptBatch(f"record #{i}: key/payload lengths run past the end of the batch")
        try:
            key = str(view[pos : pos + key_len], "utf-8")
        except UnicodeDecodeError:
            raise CorruptBatch(f"record #{i}: key is not valid UTF-8") from None
        pos += key_len
        if offset > after and (limit < 0 or len(out) < limit):
            out.append((offset, ts_ms, key, bytes(view[pos : pos + payload_len])))
        pos += payload_len
    if pos != end:
        raise CorruptBatch(f"trailing garbage: {end - pos} bytes after the {count} records")
    return out


def iter_batch(buf: bytes | bytearray | memoryview) -> Iterator[tuple[int, int, str, bytes]]:
    """Iterate over every record of a batch; the whole batch is checked when this is called."""
    return iter(decode_batch(buf, _ALL))
