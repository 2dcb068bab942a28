"""A small HTTP/1.1 client for the service proxy: keep-alive pools on asyncio protocols.

The proxy needs little of a general client (no cookies, redirects, decompression, proxies
or auth), and a general one costs several times the CPU of the round trip itself. This
client writes a request in one ``transport.write``, parses the answer's head strictly
(a status line that is not ``HTTP/1.x NNN``, a folded or malformed header, a bad length
or chunk size is a :class:`UpstreamError`), and reads the body by ``Content-Length``,
chunked coding or until close. A connection goes back to its pool only when its answer
was read completely and both sides keep it alive.
"""

from __future__ import annotations

import asyncio
import collections
import re
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from multidict import CIMultiDict

MAX_HEAD = 64 * 1024
HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 512 * 1024
IDLE_S = 15.0  # idle keep-alive connections older than this are not reused
_STATUS = re.compile(rb"^HTTP/1\.([01]) ([1-9][0-9]{2})(?: ([^\r\n]*))?$")
_TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CHUNK = re.compile(rb"^([0-9A-Fa-f]{1,16})(?:;[^\r\n]*)?$")


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
    """One connection: a byte buffer fed by the transport and one waiter at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.closed = False
        self.exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.idle_since = 0.0
        self.used = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.exc = exc
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def more(self, timeout: float, deadline: float | None = None) -> None:
        """Wait for more bytes (or the end of the connection); TimeoutError after ``timeout``
        seconds or at loop time ``deadline``, whichever comes first."""
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

    def take(self, n: int) -> bytes:
        data = bytes(self.buf[:n])
        del self.buf[:n]
        if self._paused and len(self.buf) < LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Response:
    """A backend's answer: status, reason, headers; the body is read or streamed once."""

    __slots__ = ("status", "reason", "headers", "_conn", "_pool", "_left", "_chunked",
                 "_until_close", "_keep", "_done", "_timeout")

    def __init__(self, status: int, reason: str, headers: CIMultiDict[str], conn: _Conn, pool: _Pool,
                 length: int | None, chunked: bool, keep: bool, timeout: float) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self._conn = conn
        self._pool = pool
        self._left = length if length is not None else 0
        self._chunked = chunked
        self._until_close = length is None and not chunked
        self._keep = keep and not self._until_close
        self._done = length == 0 and not chunked
        self._timeout = timeout

    @property
    def content_length(self) -> int | None:
        return None if self._chunked or self._until_close else self._left

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body, piece by piece as it arrives (chunked coding removed)."""
        conn = self._conn
        while not self._done:
            if self._chunked:
                async for piece in self._chunk():
                    yield piece
                continue
            if not conn.buf:
                if conn.closed:
                    if self._until_close:
                        self._done = True
                        break
                    raise UpstreamError("reset", "the backend closed the connection mid-body")
                await conn.more(self._timeout)
                continue
            if self._until_close:
                yield conn.take(len(conn.buf))
                continue
            piece = conn.take(min(self._left, len(conn.buf)))
            self._left -= len(piece)
            self._done = self._left == 0
            yield piece

    async def _line(self) -> bytes:
        conn = self._conn
        while True:
            i = conn.buf.find(b"\r\n")
            if i >= 0:
                return conn.take(i + 2)[:-2]
            if len(conn.buf) > 4096:
                raise UpstreamError("protocol", "chunk size line too long")
            await conn.more(self._timeout)

    async def _chunk(self) -> AsyncIterator[bytes]:
        m = _CHUNK.match(await self._line())
        if m is None:
            raise UpstreamError("protocol", "bad chunk size line")
        size = int(m.group(1), 16)
        if size == 0:
            while await self._line():  # trailers, up to the empty line
                pass
            self._done = True
            return
        conn = self._conn
        while size:
            if not conn.buf:
                await conn.more(self._timeout)
                continue
            piece = conn.take(min(size, len(conn.buf)))
            size -= len(piece)
            yield piece
        if await self._line() != b"":
            raise UpstreamError("protocol", "chunk not followed by CRLF")

    async def read(self, limit: int = 64 * 1024 * 1024) -> bytes:
        """The whole body (at most ``limit`` bytes, else UpstreamError)."""
        conn = self._conn
        if not self._chunked and not self._until_close and len(conn.buf) >= self._left:
            data = conn.take(self._left)  # the common case: it is all there already
            self._left, self._done = 0, True
            return data
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
        self._pool.put(conn, self._done and self._keep and not conn.buf and not conn.closed)

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
                if conn.closed or conn.buf or now - conn.idle_since > IDLE_S or conn.transport is None \
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
            conn.transport.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                conn.transport.write(body)
            return await self._head(conn, pool, method, reused, read_timeout, deadline)
        except BaseException:
            pool.put(conn, False)
            raise

    async def _head(self, conn: _Conn, pool: _Pool, method: str, reused: bool, timeout: float,
                    deadline: float | None) -> Response:
        while True:
            end = conn.buf.find(b"\r\n\r\n")
            while end < 0:
                if len(conn.buf) > MAX_HEAD:
                    raise UpstreamError("protocol", "answer head larger than 64 KiB")
                if conn.closed:
                    if reused and not conn.buf:
                        raise UpstreamError("stale", "the kept-alive connection was closed by the backend")
                    raise UpstreamError("reset", "connection closed before a complete answer head")
                await conn.more(timeout, deadline)
                end = conn.buf.find(b"\r\n\r\n")
            raw = conn.take(end + 4)[:-4].split(b"\r\n")
            m = _STATUS.match(raw[0])
            if m is None:
                raise UpstreamError("protocol", "not an HTTP/1.x status line")
            status = int(m.group(2))
            headers: CIMultiDict[str] = CIMultiDict()
            for line in raw[1:]:
                name, sep, value = line.partition(b":")
                if not sep or not _TOKEN.match(name) or b"\x00" in value or b"\r" in value:
                    raise UpstreamError("protocol", "malformed header line")
                headers.add(name.decode("latin-1"), value.strip(b" \t").decode("latin-1"))
            if 100 <= status < 200 and status != 101:
                continue  # interim answer: the real one follows
            break
        keep = m.group(1) == b"1" and "close" not in headers.get("Connection", "").lower()
        te = headers.get("Transfer-Encoding", "").lower()
        cls = headers.getall("Content-Length", [])
        length: int | None
        chunked = False
        if method == "HEAD" or status in (204, 304) or status == 101:
            length = 0
        elif te:
            if te.replace(" ", "").split(",")[-1] != "chunked":
                raise UpstreamError("protocol", f"unsupported Transfer-Encoding {te[:40]!r}")
            chunked, length = True, None
        elif cls:
            if len(set(cls)) != 1 or not cls[0].isdigit() or len(cls[0]) > 18:
                raise UpstreamError("protocol", "bad Content-Length")
            length = int(cls[0])
        else:
            length = None
        return Response(status, (m.group(3) or b"").decode("latin-1"), headers, conn, pool, length,
                        chunked, keep, timeout)

    def close(self) -> None:
        for p in self.pools.values():
            p.close()
        self.pools.clear()
        self._origins.clear()
