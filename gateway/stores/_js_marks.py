"""The JetStream store's high-water mark checks: a wiped or replaced JetStream is refused
(see :mod:`gateway.stores.hwm`)."""

from __future__ import annotations

import asyncio
import logging

from gateway.stores._js_base import _Base

log = logging.getLogger("gateway.stores.jetstream")


class _Marks(_Base):
    """Compare the streams with the mark on (re)connect; note sequences seen; save the mark."""

    async def _check_identity(self) -> None:
        """Compare the streams with the mark: on a mismatch set :attr:`reset_reason` (every call
        then refuses) unless a reset is accepted; then serve again (``_verified``)."""
        hwm = self.hwm
        if hwm is None:
            self._verified = True
            return
        problems = []
        for stream in (self.names["records"], self.names["keys"]):
            info = await self.js.stream_info(stream)
            problem = hwm.problem(stream, info.created, info.state.last_seq)
            if problem is not None and self._accept_reset:
                log.warning("accepted a JetStream reset (--accept-reset): %s", problem)
                hwm.reset(stream, info.created, info.state.last_seq)
            elif problem is not None:
                problems.append(problem)
            else:
                hwm.note_info(stream, info.created, info.state.last_seq)
        self._accept_reset = False
        if problems:
            self.reset_reason = (
                "; ".join(problems) + ": offsets would be reused (consumers holding `after` would "
                "miss new records), so this node refuses pushes and reads. If the reset is intended, "
                f"restart the node with `python -m gateway serve --accept-reset` (it starts {hwm.path} "
                "over); otherwise restore JetStream's data")
            log.error("%s", self.reset_reason)
        else:
            self.reset_reason = self.schema_error  # a newer schema stays refused
        await self._write_marks()
        self._verified = True

    async def _write_marks(self) -> None:
        if self.hwm is None:
            return
        text = self.hwm.dump()
        if text is not None:
            try:
                await asyncio.to_thread(self.hwm.write, text)
            except OSError as exc:
                self.hwm.dirty = True
                log.warning("cannot write %s: %s", self.hwm.path, exc)

    async def _save_marks(self) -> None:
        """Write the mark once a second when it moved (appends and reads raise it)."""
        while True:
            await asyncio.sleep(1.0)
            await self._write_marks()

    def _note(self, stream: str, seq: int) -> None:
        if self.hwm is not None:
            self.hwm.note_seq(stream, seq)
