"""Long-polls on the JetStream store: a core NATS subscription to the resource's record
subject wakes the waiters of this node when any node appends.

In a cluster the subscription's interest reaches the other servers a moment after it is
made (newer servers take longer): an append through another server in that moment wakes
nobody. A waiter therefore looks again a few times shortly after subscribing
(:data:`_RECHECKS`), and from then on only when woken."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from gateway.stores._js_base import _Base
from gateway.stores._js_wire import _token

#: Seconds after the start of a wait at which it reads again without being woken.
_RECHECKS = (0.25, 1.0, 3.0)


class _LongPoll(_Base):
    """``wait``."""

    async def wait(self, resource: str, after: int, timeout: float) -> bool:
        """Wait for a record > ``after``: a subscription on the resource's subject wakes us."""
        self._check()
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + max(timeout, 0.0)
        rechecks = [started + s for s in _RECHECKS]
        waiters = self._waiters.setdefault(resource, set())
        fut: asyncio.Future[None] = loop.create_future()
        waiters.add(fut)
        try:
            await self._subscribe(resource)
            while True:
                # Subscribed before the check: an append in between still wakes us.
                if await self.read(resource, after, 1):
                    return True
                now = loop.time()
                remaining = deadline - now
                if remaining <= 0:
                    return False
                while rechecks and rechecks[0] <= now:
                    rechecks.pop(0)
                # asyncio.wait, not asyncio.timeout: nothing cancels this task when fut and the
                # timer end in the same loop iteration.
                await asyncio.wait({fut}, timeout=min(remaining, rechecks[0] - now) if rechecks else remaining)
                if not fut.done():
                    if loop.time() >= deadline - 0.001:
                        return False
                    continue
                if self._state != "open":
                    return False
                waiters.discard(fut)
                fut = loop.create_future()
                waiters.add(fut)
        finally:
            waiters.discard(fut)
            if not waiters:
                self._waiters.pop(resource, None)
                sub = self._subs.pop(resource, None)
                if sub is not None and self.connected:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()

    async def _subscribe(self, resource: str) -> None:
        if resource in self._subs:
            return
        nc = self.nc
        assert nc is not None

        async def woke(_msg: Any) -> None:
            for f in self._waiters.get(resource, ()):
                if not f.done():
                    f.set_result(None)

        sub = await self._call(nc.subscribe(f"{self.prefix}.rec.{_token(resource)}", cb=woke))
        if resource in self._subs:  # another waiter subscribed meanwhile
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            return
        self._subs[resource] = sub
        await self._call(nc.flush(timeout=self.op_timeout_s))
