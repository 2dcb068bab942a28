"""The store protocol: what every backend (sqlite, jetstream) offers the handlers.

Handlers never know which backend they talk to. A backend keeps, per resource, an
append-only log of records with strictly increasing (not necessarily contiguous)
offsets, the latest record per key, consumers' cursors and idempotency keys.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec

from gateway.redact import redact

#: Largest batch a store accepts in one append; offsets may be derived as
#: ``batch_sequence * OFFSET_STRIDE + index`` so that a global sequence gives per-resource order.
OFFSET_STRIDE = 1024


MAX_BATCH_RECORDS = OFFSET_STRIDE


def check_batch(records: list[tuple[str, bytes]]) -> None:
    """Refuse what no backend stores: 0 or too many records, items not ``(str, bytes)``."""
    count = len(records)
    if not 1 <= count <= MAX_BATCH_RECORDS:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH_RECORDS} records, not {count}")
    for i, rec in enumerate(records):
        if (
            len(rec) != 2
            or type(rec[0]) is not str
            or not isinstance(rec[1], (bytes, bytearray, memoryview))
        ):
            raise TypeError(f"record #{i} must be a (str key, bytes data) pair")


class Record(msgspec.Struct, array_like=True, frozen=True):
    """One stored record: ``data`` is the record's canonical JSON object as bytes."""

    offset: int
    key: str
    ts_ms: int
    data: bytes


class AppendResult(msgspec.Struct, frozen=True):
    """What an append answered: the offsets of the first and last record written."""

    first: int
    last: int
    count: int
    replayed: bool = False


class StoreError(Exception):
    """Base class of store errors; a message never carries a URL's credentials."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class StoreUnavailable(StoreError):
    """The backend cannot be reached or is shutting down (HTTP 503)."""


class IdempotencyConflict(StoreError):
    """The Idempotency-Key was used before with another body (HTTP 409)."""


class CursorConflict(StoreError):
    """A cursor commit would move backwards without ``force`` (HTTP 409)."""

    def __init__(self, current: int, requested: int) -> None:
        super().__init__(f"cursor is at {current}; {requested} would move it backwards")
        self.current = current
        self.requested = requested


@runtime_checkable
class Store(Protocol):
    """Async store protocol. All methods are safe to call concurrently from one event loop.

    Contract details every backend follows (the suite in ``tests/stores`` checks them):
    ``ping()`` never raises and is False after ``close()``; ``wait()`` answers False when the
    store closes during the wait; ``append`` raises ``ValueError`` for 0 or more than
    ``OFFSET_STRIDE`` records and ``TypeError`` for items that are not ``(str, bytes)``;
    ``set_cursor`` raises ``ValueError`` for a negative offset.
    """

    async def open(self) -> None:
        """Connect / create schema. Idempotent."""

    async def close(self) -> None:
        """Flush pending writes and release resources. Idempotent."""

    async def ping(self) -> bool:
        """True when the backend is reachable and writable (readiness)."""

    async def append(
        self,
        resource: str,
        records: list[tuple[str, bytes]],
        *,
        client: str,
        idempotency_key: str | None = None,
        body_hash: str = "",
    ) -> AppendResult:
        """Durably append ``(key, data_json_bytes)`` records; return only once durable.

        With an ``idempotency_key`` already seen for (client, resource): the same
        ``body_hash`` answers the original offsets with ``replayed=True`` and writes
        nothing; another hash raises :class:`IdempotencyConflict`. Keys are kept >= 24 h.
        """

    async def read(self, resource: str, after: int, limit: int) -> list[Record]:
        """Records with offset > ``after`` in offset order, at most ``limit``."""

    async def latest(self, resource: str, key: str) -> Record | None:
        """The most recently appended record with this key, or None."""

    async def wait(self, resource: str, after: int, timeout: float) -> bool:
        """Wait until a record with offset > ``after`` exists or ``timeout`` elapses.

        Returns True when records are available. Must not poll the database in a loop.
        """

    async def get_cursor(self, client: str, resource: str) -> int:
        """The client's committed offset for the resource, 0 when none."""

    async def set_cursor(self, client: str, resource: str, offset: int, force: bool = False) -> int:
        """Commit the cursor; raise :class:`CursorConflict` when it would move backwards."""
