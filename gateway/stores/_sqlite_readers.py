"""Reader threads for the SQLite store, each with its own connection.

Cheaper than ``loop.run_in_executor`` on the hot path: a request is one queue put, and
the answers finished while the loop was busy are handed back in one loop callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

ReadFn = Callable[..., Any]
_Job = tuple[asyncio.Future[Any], ReadFn, tuple[Any, ...]]


class ReaderPool:
    """``threads`` threads serving ``submit(fn, *args)`` as ``fn(conn, *args)``."""

    def __init__(
        self,
        threads: int,
        connect: Callable[[], sqlite3.Connection],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._connect = connect
        self._loop = loop
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._done_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._serve, name=f"sqlite-reader-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: ReadFn, *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(conn, *args)`` on a reader thread; the future is resolved on the loop."""
        fut = self._loop.create_future()
        self._queue.put((fut, fn, args))
        return fut

    def close(self) -> None:
        """Finish queued reads, stop the threads and close their connections (blocking)."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _serve(self) -> None:
        conn: sqlite3.Connection | None = None
        connect_error: BaseException | None = None
        try:
            conn = self._connect()
        except BaseException as exc:  # noqa: BLE001 - answered to every request
            connect_error = exc
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    return
                fut, fn, args = job
                if connect_error is not None:
                    self._post(fut, None, connect_error)
                    continue
                try:
                    result = fn(conn, *args)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    self._post(fut, None, exc)
                else:
                    self._post(fut, result, None)
        finally:
            if conn is not None:
                conn.close()

    def _post(self, fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        with self._done_lock:
            self._done.append((fut, result, error))
            first = len(self._done) == 1
        if first:
            # RuntimeError: the loop is closed, nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._done_lock:
            done, self._done = self._done, []
        for fut, result, error in done:
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)
