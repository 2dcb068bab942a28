"""Cross-process commit wake-ups for stores that share one database file.

Every process that opens the file binds one Linux abstract-namespace datagram socket
and drops an empty marker file named after it in ``<db>.notify/``. After a commit, the
writer sends the names of the resources it appended to to every other marker's socket;
the receiver wakes its long-polls for those resources, which re-check the database.
Nothing polls: a process that sleeps costs nothing until a peer commits.

Markers of dead processes (kill -9) are removed by the first sender that gets
``ECONNREFUSED``. When a peer's queue is full (``EAGAIN``), the names are kept as owed
and re-sent by :meth:`Notifier.retry_owed`, so a wake-up is delayed, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable

#: Sent instead of the names when they do not fit one datagram: wake every waiter.
WAKE_ALL = "*"
_MAX_MESSAGE = 2048
_PEER_REFRESH_S = 1.0
_MAX_OWED_NAMES = 256

Receiver = Callable[[set[str] | None], None]


def supported() -> bool:
    """True where abstract-namespace unix sockets exist (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "AF_UNIX")


class Notifier:
    """One process's endpoint: receives peers' wake-ups and sends its own."""

    def __init__(self, db_path: str) -> None:
        real = os.path.realpath(db_path)
        self.directory = real + ".notify"
        self._prefix = b"\0onestop-" + hashlib.sha1(real.encode()).hexdigest()[:16].encode() + b"-"
        self.name = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._recv: socket.socket | None = None
        self._send: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._peers: list[str] = []
        self._peers_mtime = -1
        self._peers_checked = 0.0
        self._owed: dict[str, set[str]] = {}
        self.sent = 0
        self.received = 0
        self.dropped_peers = 0

    # -- life cycle ---------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, receiver: Receiver) -> None:
        """:meth:`bind` then :meth:`attach` (the first does file-system I/O)."""
        self.bind()
        self.attach(loop, receiver)

    def close(self) -> None:
        """:meth:`detach` then :meth:`release`. Idempotent."""
        self.detach()
        self.release()

    def bind(self) -> None:
        """Bind this process's socket and publish its marker (blocking: not on the loop)."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        recv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        send = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            recv.setblocking(False)
            recv.bind(self._address(self.name))
            send.setblocking(False)
            os.close(os.open(os.path.join(self.directory, self.name),
                             os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        except OSError:
            recv.close()
            send.close()
            raise
        self._recv, self._send = recv, send

    def release(self) -> None:
        """Close the sockets and remove the marker (blocking: not on the loop). Idempotent."""
        recv, self._recv = self._recv, None
        if recv is not None:
            recv.close()
            _unlink(os.path.join(self.directory, self.name))
        send, self._send = self._send, None
        if send is not None:
            send.close()

    # -- receiving (event loop thread) ---------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop, receiver: Receiver) -> None:
        """Deliver peers' wake-ups to ``receiver`` on ``loop``."""
        recv = self._recv
        if recv is None:
            raise RuntimeError("Notifier.attach() before bind()")
        self._loop = loop

        def on_readable() -> None:
            names: set[str] = set()
            wake_all = False
            while True:
                try:
                    data = recv.recv(_MAX_MESSAGE + 16)
                except OSError:  # BlockingIOError: drained
                    break
                self.received += 1
                for part in data.decode("utf-8", "replace").split("\n"):
                    if part == WAKE_ALL:
                        wake_all = True
                    elif part:
                        names.add(part)
            if wake_all:
                receiver(None)
            elif names:
                receiver(names)

        loop.add_reader(recv.fileno(), on_readable)

    def detach(self) -> None:
        """Stop delivering wake-ups. Idempotent."""
        loop, self._loop = self._loop, None
        if loop is not None and self._recv is not None and not loop.is_closed():
            loop.remove_reader(self._recv.fileno())

    # -- sending (writer thread) ---------------------------------------------------------

    def publish(self, names: Iterable[str]) -> None:
        """Tell every peer that these resources have new records."""
        wanted = set(names)
        if not wanted or self._send is None:
            return
        with self._lock:
            for peer in self._current_peers():
                self._send_to(peer, wanted | self._owed.pop(peer, set()))

    def retry_owed(self) -> bool:
        """Re-send wake-ups that found a full queue; True while some are still owed."""
        with self._lock:
            owed, self._owed = self._owed, {}
            for peer, names in owed.items():
                self._send_to(peer, names)
            return bool(self._owed)

    @property
    def owes(self) -> bool:
        """True when some wake-up still waits for a peer's queue to drain."""
        return bool(self._owed)

    def _send_to(self, peer: str, names: set[str]) -> None:
        assert self._send is not None
        message = "\n".join(sorted(names)).encode()
        if len(message) > _MAX_MESSAGE:
            message = WAKE_ALL.encode()
        try:
            self._send.sendto(message, self._address(peer))
            self.sent += 1
        except (BlockingIOError, InterruptedError):
            owed = self._owed.setdefault(peer, set())
            owed.update(names)
            if len(owed) > _MAX_OWED_NAMES:
                self._owed[peer] = {WAKE_ALL}
        except (ConnectionRefusedError, FileNotFoundError):
            # Nobody is bound to it any more: the process died without closing.
            _unlink(os.path.join(self.directory, peer))
            self._peers = [p for p in self._peers if p != peer]
            self.dropped_peers += 1
        except OSError:
            pass

    def peers(self) -> list[str]:
        """The other processes that have the database open (their markers)."""
        return list(self._current_peers())

    def _current_peers(self) -> list[str]:
        """The markers in the notify directory, re-listed when it changed."""
        now = time.monotonic()
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except OSError:
            return []
        if mtime != self._peers_mtime or now - self._peers_checked > _PEER_REFRESH_S:
            try:
                entries = os.listdir(self.directory)
            except OSError:
                entries = []
            self._peers = [e for e in entries if e != self.name and not e.startswith(".")]
            self._peers_mtime = mtime
            self._peers_checked = now
        return self._peers

    def _address(self, name: str) -> bytes:
        return self._prefix + name.encode()


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
