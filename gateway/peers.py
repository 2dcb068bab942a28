"""Open connections per client address (``[limits] max_connections_per_ip``)."""

from __future__ import annotations


class AddressCounts:
    """How many connections each client address holds, refusing one over ``limit``."""

    __slots__ = ("limit", "_open")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def take(self, address: str) -> bool:
        """Count a new connection from ``address``; False (and not counted) when it has ``limit``."""
        n = self._open.get(address, 0)
        if n >= self.limit:
            return False
        self._open[address] = n + 1
        return True

    def give(self, address: str) -> None:
        """A counted connection from ``address`` closed."""
        n = self._open.get(address, 0) - 1
        if n > 0:
            self._open[address] = n
        else:
            self._open.pop(address, None)

    def __getitem__(self, address: str) -> int:
        return self._open.get(address, 0)
