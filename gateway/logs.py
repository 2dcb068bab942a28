"""Structured JSON logs: one access line per request and error lines, batched off the hot path.

Lines carry the request id; never a secret, a signature or a record's data.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import IO

import msgspec

from gateway.redact import redact

_enc = msgspec.json.Encoder().encode


class AccessLog:
    """Buffers JSON lines and writes them to a stream every 100 ms."""

    def __init__(self, stream: IO[str] | None = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._buf: list[bytes] = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flusher())

    def access(self, request_id: str, client: str | None, method: str, path: str,
               status: int, seconds: float) -> None:
        if self.enabled:
            self._buf.append(_enc({"ts": round(time.time(), 3), "level": "info", "event": "access",
                                   "request_id": request_id, "client": client, "method": method,
                                   "path": path[:512], "status": status,
                                   "ms": round(seconds * 1000, 3)}))
            if len(self._buf) >= 1024:
                self.flush()

    def event(self, event: str, *, level: str = "info", **fields: object) -> None:
        fields = {k: redact(v) if isinstance(v, str) else v for k, v in fields.items()}
        self._buf.append(_enc({"ts": round(time.time(), 3), "level": level, "event": event, **fields}))
        self.flush()

    def error(self, request_id: str, message: str, exc: BaseException | None) -> None:
        doc = {"ts": round(time.time(), 3), "level": "error", "event": "error",
               "request_id": request_id, "message": redact(message)}
        if exc is not None:
            doc["error"] = redact(f"{type(exc).__name__}: {exc}")[:1000]
        self._buf.append(_enc(doc))
        self.flush()

    def flush(self) -> None:
        if self._buf:
            data = b"\n".join(self._buf).decode() + "\n"
            self._buf.clear()
            try:
                self.stream.write(data)
                self.stream.flush()
            except (OSError, ValueError):
                pass

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            self.flush()

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            self._task = None
        self.flush()
