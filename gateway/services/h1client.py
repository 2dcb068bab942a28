"""A small HTTP/1.1 client for the service proxy: keep-alive pools on asyncio protocols.

The proxy needs little of a general client (no cookies, redirects, decompression, proxies
or auth), and a general one costs several times the CPU of the round trip itself. This
client writes a request in one ``transport.write`` and leaves the answer to ``httptools``
(the llhttp parser): a status line that is not ``HTTP/1.x NNN``, a folded or malformed
header, a bad or repeated length, a bad chunk size or a Transfer-Encoding other than
chunked is a :class:`UpstreamError` of kind ``protocol``. Bodies arrive by
``Content-Length``, chunked coding or until close and are streamed with flow control (the
socket pauses while more than ``HIGH_WATER`` bytes wait to be read). A connection goes back
to its pool only when its answer was read completely and both sides keep it alive.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict

MAX_HEAD = 64 * 1024
HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 512 * 1024
IDLE_S = 15.0  # idle keep-alive connections older than this are not reused


class UpstreamError(Exception):
    """The backend could not be reached, broke the connection or did not speak HTTP/1.1.

    ``kind``: ``connect`` (nothing was sent), ``stale`` (a reused keep-alive connection was
    found closed before any answer), ``reset`` or ``protocol``.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Conn(asyncio.Protocol):
    """One connection: an httptools parser fed by the transport, the answer being read
    (head, queued body pieces, end or error) and one waiter at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.dirty = False  # bytes nobody asked for: never reuse
        self.idle_since = 0.0
        self.used = False
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.begin(False)

    def begin(self, head_only: bool) -> None:
        """Get ready for the answer to a request just written (``head_only`` for HEAD)."""
        self.head_only = head_only
        self.status = 0
        self.reason = ""
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.head_done = False
        self.done = False
        self.interim = False
        self.keep = False
        self.chunked = False
        self.length: int | None = None
        self.until_close = False
        self.error: UpstreamError | None = None
        self.received = 0  # bytes of this answer so far
        self.body: collections.deque[bytes] = collections.deque()
        self.queued = 0

    # --- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done or self.head_done:
            self.dirty = True  # a second answer (or bytes after a HEAD answer): unasked for

    def on_status(self, reason: bytes) -> None:
        self.reason = reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:  # trailers after a chunked body are dropped
            self.headers.add(name.decode("latin-1"), value.rstrip(b" \t").decode("latin-1"))

    def on_headers_complete(self) -> None:
        p = self.parser
        status = p.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.interim = True  # the real answer follows
            self.headers = CIMultiDict()
            self.reason = ""
            return
        h = self.headers
        te = h.get("Transfer-Encoding")
        if te is not None and te.lower().replace(" ", "").split(",")[-1] != "chunked":
            self.error = UpstreamError("protocol", f"unsupported Transfer-Encoding {te[:40]!r}")
            raise self.error
        self.status = status
        self.keep = p.should_keep_alive()
        if self.head_only or status in (101, 204, 304):
            self.length = 0
            self.done = self.head_only  # llhttp cannot know a HEAD answer has no body
        elif te is not None:
            self.chunked = True
        else:
            cl = h.get("Content-Length")  # llhttp checked it is one number
            if cl is None:
                self.until_close, self.keep = True, False
            else:
                self.length = int(cl)
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        if self.done:
            self.dirty = True
            return
        self.body.append(body)
        self.queued += len(body)
        if self.queued > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
        elif not self.head_only:
            self.done = True

    # --- transport events ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.error is not None or self.dirty:
            return
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.dirty = True  # a switched protocol is not for this client
            self.done = True
        except httptools.HttpParserCallbackError:
            if self.error is None:  # a callback failed unexpectedly
                self.error = UpstreamError("protocol", "answer could not be parsed")
        except httptools.HttpParserError as exc:
            self.error = UpstreamError("protocol", self._describe(exc))
        if self.error is None and not self.head_done and self.received > MAX_HEAD:
            self.error = UpstreamError("protocol", "answer head larger than 64 KiB")
        if self.error is not None:
            self.close()
        elif self.head_only and self.done:
            self.parser = httptools.HttpResponseParser(self)  # it still expects a body
        self._wake()

    def _describe(self, exc: Exception) -> str:
        if self.head_done:
            part = "body (chunk coding)" if self.chunked else "body"
        elif (self.parser.get_status_code() == 0 or isinstance(exc, httptools.HttpParserInvalidStatusError)
              or "response line" in str(exc)):
            part = "status line (not HTTP/1.x NNN)"
        else:
            part = "header"
        return f"malformed {part}: {exc}"

    def eof_received(self) -> bool:
        self._ended()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended()

    def _ended(self) -> None:
        self.closed = True
        if self.head_done and self.until_close:
            self.done = True
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def more(self, timeout: float, deadline: float | None = None) -> None:
        """Wait for the parser to make progress (or the connection to end); TimeoutError after
        ``timeout`` seconds or at loop time ``deadline``, whichever comes first."""
        if self.closed:
            raise UpstreamError("reset", "connection closed by the backend")
        loop = asyncio.get_running_loop()
        at = loop.time() + timeout
        if deadline is not None and deadline < at:
            at = deadline
        waiter = self._waiter = loop.create_future()
        timer = loop.call_at(at, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def take(self) -> bytes:
        """All body bytes parsed so far (resumes a paused socket)."""
        body = self.body
        data = body.popleft() if len(body) == 1 else b"".join(body)
        body.clear()
        self.queued = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    @property
    def reusable(self) -> bool:
        return self.done and self.keep and not self.dirty and not self.closed and self.error is None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Response:
    """A backend's answer: status, reason, headers; the body is read or streamed once."""

    __slots__ = ("status", "reason", "headers", "_conn", "_pool", "_length", "_timeout")

    def __init__(self, conn: _Conn, pool: _Pool, timeout: float) -> None:
        self.status = conn.status
        self.reason = conn.reason
        self.headers = conn.headers
        self._conn = conn
        self._pool = pool
        self._length = conn.length
        self._timeout = timeout

    @property
    def content_length(self) -> int | None:
        """The body's length when the answer declared one (None: chunked or until close)."""
        return self._length

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body, piece by piece as it arrives (chunked coding removed)."""
        conn = self._conn
        while True:
            if conn.body:
                yield conn.take()
                continue
            if conn.error is not None:
                raise conn.error
            if conn.done:
                return
            if conn.closed:
                raise UpstreamError("reset", "the backend closed the connection mid-body")
            await conn.more(self._timeout)

    async def read(self, limit: int = 64 * 1024 * 1024) -> bytes:
        """The whole body (at most ``limit`` bytes, else UpstreamError)."""
        conn = self._conn
        if conn.done and conn.error is None and conn.queued <= limit:
            return conn.take() if conn.body else b""  # the common case: it is all there already
        parts: list[bytes] = []
        size = 0
        async for piece in self.iter_chunks():
            size += len(piece)
            if size > limit:
                raise UpstreamError("protocol", f"answer larger than {limit} bytes")
            parts.append(piece)
        return b"".join(parts)

    def release(self) -> None:
        """Give the connection back (reused only if the answer was read completely)."""
        if self._conn is None:  # type: ignore[comparison-overlap]
            return
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        self._pool.put(conn, conn.reusable and not conn.body)

    def close(self) -> None:
        """Drop the connection (the answer was not read to its end)."""
        if self._conn is None:  # type: ignore[comparison-overlap]
            return
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        self._pool.put(conn, False)


class _Pool:
    """Keep-alive connections to one origin, at most ``limit`` in use at once."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, limit: int) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.idle: collections.deque[_Conn] = collections.deque()
        self.sem = asyncio.Semaphore(limit)
        self.in_use = 0

    async def get(self, connect_timeout: float) -> _Conn:
        await self.sem.acquire()
        self.in_use += 1
        try:
            now = time.monotonic()
            while self.idle:
                conn = self.idle.pop()
                if conn.closed or conn.dirty or now - conn.idle_since > IDLE_S or conn.transport is None \
                        or conn.transport.is_closing():
                    conn.close()
                    continue
                return conn
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(connect_timeout):
                    _, conn = await loop.create_connection(_Conn, self.host, self.port, ssl=self.tls)
            except TimeoutError:
                raise UpstreamError("connect", f"no connection to {self.host}:{self.port} within "
                                               f"{connect_timeout:g} s") from None
            except OSError as exc:
                raise UpstreamError("connect", f"{self.host}:{self.port}: {exc.strerror or exc}") from None
            return conn
        except BaseException:
            self.in_use -= 1
            self.sem.release()
            raise

    def put(self, conn: _Conn, reusable: bool) -> None:
        self.in_use -= 1
        self.sem.release()
        if reusable:
            conn.used = True
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


class H1Client:
    """Pools per origin; :meth:`request` answers once the head of the answer arrived."""

    def __init__(self, limit: int = 64, connect_timeout: float = 2.0) -> None:
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.pools: dict[tuple[str, str, int], _Pool] = {}
        self._origins: dict[str, tuple[_Pool, str]] = {}  # "scheme://host:port" -> (pool, netloc)
        self._tls: ssl.SSLContext | None = None

    @property
    def in_use(self) -> int:
        """Connections lent out right now (0 when nothing leaks)."""
        return sum(p.in_use for p in self.pools.values())

    def _pool(self, scheme: str, host: str, port: int) -> _Pool:
        key = (scheme, host, port)
        pool = self.pools.get(key)
        if pool is None:
            tls = None
            if scheme == "https":
                if self._tls is None:
                    self._tls = ssl.create_default_context()
                tls = self._tls
            pool = self.pools[key] = _Pool(host, port, tls, self.limit)
        return pool

    async def request(self, method: str, url: str, headers: Any, body: bytes = b"",
                      read_timeout: float = 30.0, deadline: float | None = None) -> Response:
        """Send one request; answers once the head arrived (TimeoutError at loop time
        ``deadline`` or when the backend is silent for ``read_timeout``)."""
        slash = url.find("/", url.find("://") + 3)
        base, target = (url, "/") if slash < 0 else (url[:slash], url[slash:])
        origin = self._origins.get(base)
        if origin is None:
            u = urlsplit(base)
            scheme, host = u.scheme, u.hostname or ""
            port = u.port or (443 if scheme == "https" else 80)
            origin = self._origins[base] = (self._pool(scheme, host, port), u.netloc)
        pool, netloc = origin
        if deadline is None:
            conn = await pool.get(self.connect_timeout)
        else:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError
            conn = await pool.get(min(self.connect_timeout, left))
        reused = conn.used
        try:
            lines = [f"{method} {target} HTTP/1.1\r\nHost: {netloc}\r\n"]
            for k, v in headers.items():
                lines.append(f"{k}: {v}\r\n")
            if body or method in ("POST", "PUT", "PATCH"):
                lines.append(f"Content-Length: {len(body)}\r\n")
            lines.append("\r\n")
            head = "".join(lines).encode("latin-1")
            assert conn.transport is not None
            conn.begin(method == "HEAD")
            conn.transport.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                conn.transport.write(body)
            return await self._head(conn, pool, reused, read_timeout, deadline)
        except BaseException:
            pool.put(conn, False)
            raise

    async def _head(self, conn: _Conn, pool: _Pool, reused: bool, timeout: float,
                    deadline: float | None) -> Response:
        while not conn.head_done:
            if conn.error is not None:
                raise conn.error
            if conn.closed:
                if reused and not conn.received:
                    raise UpstreamError("stale", "the kept-alive connection was closed by the backend")
                raise UpstreamError("reset", "connection closed before a complete answer head")
            await conn.more(timeout, deadline)
        return Response(conn, pool, timeout)

    def close(self) -> None:
        for p in self.pools.values():
            p.close()
        self.pools.clear()
        self._origins.clear()
