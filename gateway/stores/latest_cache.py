"""A per-process cache of the latest record per (resource, key), kept exact by commits.

A keyed read answered from memory skips a thread hop and a SQLite query. The cache is
only correct while this process is the only one writing the database, so the store
turns it on only then (and clears it the moment another process opens the file). Within
the process every commit to a resource bumps that resource's generation before anyone
can see the new data, and drops the keys it wrote; a read that started before such a
commit fills nothing (its generation is stale), so no old record is ever cached after a
newer one was committed.
"""

from __future__ import annotations

from typing import Any

_NONE = object()  # a cached "no record with this key"


class LatestCache:
    """Bounded (FIFO eviction) map of (resource, key) -> latest record or "none"."""

    __slots__ = ("enabled", "max_entries", "_entries", "_gen", "_epoch", "hits", "misses")

    def __init__(self, max_entries: int = 65536) -> None:
        if type(max_entries) is not int or max_entries < 0:
            raise ValueError(f"max_entries must be an int >= 0, not {max_entries!r}")
        self.max_entries = max_entries
        self.enabled = max_entries > 0
        self._entries: dict[tuple[str, str], Any] = {}
        self._gen: dict[str, int] = {}
        self._epoch = 0  # bumped by clear(): reads in flight for any resource must not fill
        self.hits = 0
        self.misses = 0

    def get(self, resource: str, key: str) -> tuple[bool, Any]:
        """(found, record or None)."""
        value = self._entries.get((resource, key))
        if value is None:
            self.misses += 1
            return False, None
        self.hits += 1
        return True, None if value is _NONE else value

    def generation(self, resource: str) -> tuple[int, int]:
        """Take before reading the store; give to :meth:`fill` with what was read."""
        return self._epoch, self._gen.get(resource, 0)

    def fill(self, resource: str, key: str, record: Any, generation: tuple[int, int]) -> None:
        """Remember a record read at ``generation`` unless the resource changed since."""
        if not self.enabled or (self._epoch, self._gen.get(resource, 0)) != generation:
            return
        entries = self._entries
        if len(entries) >= self.max_entries:
            del entries[next(iter(entries))]
        entries[(resource, key)] = _NONE if record is None else record

    def committed(self, resource: str) -> None:
        """A commit to ``resource`` happened: reads in flight must not fill."""
        self._gen[resource] = self._gen.get(resource, 0) + 1

    def forget(self, resource: str, keys: Any) -> None:
        """Drop these keys (written by a commit) and bump the resource's generation."""
        self.committed(resource)
        entries = self._entries
        for key in keys:
            entries.pop((resource, key), None)

    def forget_resource(self, resource: str) -> None:
        """Drop every key of ``resource`` (retention removed records)."""
        self.committed(resource)
        for k in [k for k in self._entries if k[0] == resource]:
            del self._entries[k]

    def clear(self) -> None:
        """Forget everything (another process may have written)."""
        self._entries.clear()
        self._epoch += 1

    def __len__(self) -> int:
        return len(self._entries)
