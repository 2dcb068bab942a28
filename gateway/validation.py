"""Validation of pushed batches: one msgspec decoder per resource, all-or-nothing.

On failure every record is checked on its own so that the 422 lists each bad
record's index and field, not only the first one.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from gateway.catalog import ResourceEntry
from gateway.errors import FieldError, Problem
from gateway.nesting import too_deep

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_IDX = re.compile(r"^\.records\[(\d+)\](.*)$")
_NAMED = re.compile(r"field `([^`]+)`")
MAX_REPORTED = 100

_generic_json = msgspec.json.Decoder(dict[str, list[msgspec.Raw]])
_generic_msgpack = msgspec.msgpack.Decoder(dict[str, list[msgspec.Raw]])


def _field_of(msg: str, rest: str) -> str:
    """Name the field from msgspec's message and the path inside a record."""
    rest = rest.lstrip(".")
    if rest.startswith("data."):
        return rest[5:].split("[")[0]
    m = _NAMED.search(msg)
    if m:
        return m.group(1)
    return rest or "record"


def _to_field_error(exc: msgspec.ValidationError, index: int | None = None) -> FieldError:
    m = _AT.match(str(exc))
    assert m is not None
    msg, path = m.group("msg"), m.group("path") or ""
    im = _IDX.match(path)
    if im:
        return FieldError(int(im.group(1)), _field_of(msg, im.group(2)), msg)
    if index is not None:
        return FieldError(index, _field_of(msg, path), msg)
    return FieldError(None, _field_of(msg, path) if path else (_NAMED.search(msg) or [None, "body"])[1], msg)


def decode_push(entry: ResourceEntry, body: bytes, msgpack: bool, max_records: int) -> list[Any]:
    """Decode and validate a push body; return the typed records or raise a Problem."""
    if not body:
        raise Problem("client.bad_request", "the request body is empty; send {\"records\": [...]}")
    try:
        doc = entry.push_decoder(msgpack).decode(body)
    except msgspec.ValidationError as exc:
        raise _collect(entry, body, msgpack, max_records, exc) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise Problem("client.bad_request", f"malformed {'msgpack' if msgpack else 'JSON'} body: {exc}") from None
    except RecursionError:
        raise too_deep("the body") from None
    records = doc.records
    if not records:
        raise Problem("client.validation_failed", "the batch is empty",
                      errors=[FieldError(None, "records", "at least one record is required")])
    if len(records) > max_records:
        raise Problem("client.payload_too_large",
                      f"batch of {len(records)} records exceeds max_batch_records={max_records}")
    key_field = entry.spec.key
    if key_field is not None:
        bad = []
        for i, r in enumerate(records):
            v = getattr(r.data, key_field)
            if r.key != (v.isoformat() if hasattr(v, "isoformat") else str(v)):
                bad.append(FieldError(i, "key", f"key {r.key[:64]!r} must equal data.{key_field}"))
                if len(bad) >= MAX_REPORTED:
                    break
        if bad:
            raise Problem("client.validation_failed", f"{len(bad)} record(s) have a key that does not match data.{key_field}", errors=bad)
    return records


def _collect(entry: ResourceEntry, body: bytes, msgpack: bool, max_records: int,
             first: msgspec.ValidationError) -> Problem:
    """Re-check each record separately to report every failing record."""
    try:
        generic = (_generic_msgpack if msgpack else _generic_json).decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        fe = _to_field_error(first)
        return Problem("client.validation_failed", f"invalid batch: {fe.message}", errors=[fe])
    except RecursionError:
        return too_deep("the body")
    extra = [k for k in generic if k != "records"]
    if extra or "records" not in generic:
        fe = _to_field_error(first)
        return Problem("client.validation_failed", f"invalid batch: {fe.message}", errors=[fe])
    raws = generic["records"]
    if len(raws) > max_records:
        return Problem("client.payload_too_large",
                       f"batch of {len(raws)} records exceeds max_batch_records={max_records}")
    dec = (msgspec.msgpack if msgpack else msgspec.json).Decoder(entry.record_type())
    errors: list[FieldError] = []
    for i, raw in enumerate(raws):
        try:
            dec.decode(raw)
        except msgspec.ValidationError as exc:
            errors.append(_to_field_error(exc, i))
            if len(errors) >= MAX_REPORTED:
                break
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # a later record is malformed
            return Problem("client.bad_request",
                           f"malformed {'msgpack' if msgpack else 'JSON'} body in record {i}: {exc}")
        except RecursionError:
            return too_deep(f"record {i}")
    if not errors:
        errors.append(_to_field_error(first))
    return Problem("client.validation_failed",
                   f"{len(errors)} record(s) failed validation against {entry.id}'s schema", errors=errors)
