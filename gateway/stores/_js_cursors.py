"""Consumers' cursors in the JetStream store: a KV bucket, compare-and-set per commit."""

from __future__ import annotations

from gateway.stores._js_base import _Base
from gateway.stores._js_wire import _digest, _WrongLast
from gateway.stores.base import CursorConflict, StoreUnavailable


class _Cursors(_Base):
    """``get_cursor`` and ``set_cursor``."""

    async def get_cursor(self, client: str, resource: str) -> int:
        """The client's committed offset, 0 when none."""
        self._check()
        entry = await self._kv_get(self.names["cursors"], _digest(client, resource))
        return int(entry[1] or b"0") if entry is not None else 0

    async def set_cursor(self, client: str, resource: str, offset: int, force: bool = False) -> int:
        """Commit with compare-and-set on the bucket's revision; CursorConflict when backwards."""
        self._check()
        if type(offset) is not int or offset < 0:
            raise ValueError(f"cursor offset must be an integer >= 0, not {offset!r}")
        bucket = self.names["cursors"]
        key = _digest(client, resource)
        value = str(offset).encode()
        for _ in range(100):
            entry = await self._kv_get(bucket, key)
            revision, current = (entry[0], int(entry[1] or b"0")) if entry is not None else (0, 0)
            if offset < current and not force:
                raise CursorConflict(current, offset)
            if entry is not None and offset == current:
                return offset
            try:
                await self._kv_write(bucket, key, value, revision)
                return offset
            except _WrongLast:
                continue  # another commit came first: look again
        raise StoreUnavailable("cursor commit kept racing with other commits; retry")
