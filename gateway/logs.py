"""The node's log: one-line JSON documents, written through the standard library's logging.

Every line is ``{"ts", "level", "event", ...}``: ``access`` lines (request id, client, method,
path, status, ms), the node's events (``listening``, ``reloaded``, ...) and ``error`` lines
(request id, message, error). Never a secret, a signature or a record's data: every line goes
through :func:`gateway.redact.redact`.

Loggers: ``gateway.access`` (one ``info`` line per request), ``gateway.node`` (events and
errors) and ``gateway.<module>``; ``[node] log_level`` is the level of ``gateway``. Libraries
(nats-py, aiohttp, asyncio) log through the same formatter at ``warning`` and above, one line
each (an exception as ``"error": "Type: message"``, never a traceback).

:func:`configure` installs :class:`JsonLineHandler` on the root logger: access lines are
buffered and written by the handler's own thread every 100 ms (or at 1024 lines), so the
request path only formats a line; every other line is written at once.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import IO, Any

import msgspec

from gateway.redact import redact

LEVELS: dict[str, int] = {"debug": logging.DEBUG, "info": logging.INFO,
                          "warning": logging.WARNING, "error": logging.ERROR}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
          logging.ERROR: "error", logging.CRITICAL: "critical"}
_UPPER = {n: name.upper() for n, name in _NAMES.items()}
_enc = msgspec.json.Encoder().encode
_STARTED = time.time()
INFO = logging.INFO


class Line(logging.LogRecord):
    """A record of the node's own whose JSON document is built by the caller.

    Cheaper than ``Logger.info(...)``: no call-site lookup, no thread or process names.
    ``getMessage()`` is the JSON document; it also fills in the attributes that a
    ``%``-style formatter reads from ``__dict__`` (an application's own handler, pytest's).
    """

    args: Any = ()
    exc_info = exc_text = stack_info = None
    pathname = filename = module = ""
    lineno = 0
    funcName = thread = threadName = processName = process = None
    msecs = relativeCreated = 0.0

    def __init__(self, name: str, levelno: int, doc: dict[str, Any], created: float,
                 batched: bool = False) -> None:
        self.name = name
        self.levelno = levelno
        self.levelname = _UPPER[levelno]
        self.msg = doc.get("event", "")
        self.doc = doc
        self.created = created
        self.batched = batched

    def getMessage(self) -> str:  # noqa: N802 - logging's name
        d = self.__dict__
        if "filename" not in d:
            for k in _RECORD_FIELDS:
                d.setdefault(k, getattr(self, k))
            d["msecs"] = (self.created - int(self.created)) * 1000
            d["relativeCreated"] = (self.created - _STARTED) * 1000
        line = _enc(self.doc).decode()
        return redact(line) if "@" in line else line


_RECORD_FIELDS = ("name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module",
                  "exc_info", "exc_text", "stack_info", "lineno", "funcName", "thread",
                  "threadName", "processName", "process")


class _Access(msgspec.Struct, kw_only=True):
    """An access line's document (a Struct: cheaper to build and encode than a dict)."""

    ts: float
    level: str = "info"
    event: str = "access"
    request_id: str
    client: str | None
    method: str
    path: str
    status: int
    ms: float


class AccessLine(Line):
    """An access line: ``info`` on ``gateway.access``, batched (the request path builds one per
    request, so only its document and time are set per instance)."""

    name = "gateway.access"
    levelno = INFO
    levelname = "INFO"
    msg = "access"
    batched = True

    def __init__(self, doc: _Access, created: float) -> None:  # type: ignore[override]
        self.doc = doc
        self.created = created


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


class JsonFormatter(logging.Formatter):
    """One JSON document per record: a :class:`Line`'s own, or one built from any other record."""

    def format(self, record: logging.LogRecord) -> str:
        doc = record.__dict__.get("doc")
        if doc is None:
            doc = {"ts": round(record.created, 3), "level": _NAMES.get(record.levelno, "info"),
                   "event": "log", "logger": record.name, "message": record.getMessage()[:2000]}
            if record.exc_info and record.exc_info[1] is not None:
                doc["error"] = _error_text(record.exc_info[1])
        line = _enc(doc).decode()
        return redact(line) if "@" in line else line


class JsonLineHandler(logging.Handler):
    """Writes formatted lines to a stream: batched lines every ``interval_s`` (or at
    ``max_lines``) from a writer thread, every other line at once."""

    def __init__(self, stream: IO[str] | None = None, *, interval_s: float = 0.1,
                 max_lines: int = 1024) -> None:
        super().__init__()
        self.stream = stream if stream is not None else sys.stderr
        self.setFormatter(JsonFormatter())
        self.interval_s = interval_s
        self.max_lines = max_lines
        self._buf: list[bytes] = []
        self._wake = threading.Event()
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="gateway-log-writer", daemon=True)
        self._writer.start()

    def handle(self, record: logging.LogRecord) -> bool:
        """As :meth:`logging.Handler.handle`, without the filter call when there is no filter."""
        if self.filters and not self.filter(record):
            return False
        with self.lock:  # type: ignore[union-attr] - created by Handler.__init__
            self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # called with self.lock held
        try:
            doc = record.__dict__.get("doc")
            if doc is not None and type(self.formatter) is JsonFormatter:
                self._buf.append(_enc(doc))  # a Line: encoded as is, redacted when written
            else:
                self._buf.append(self.format(record).encode())
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)
            return
        if not getattr(record, "batched", False):
            self.flush()
        elif len(self._buf) == self.max_lines:
            self._wake.set()  # once: the writer thread takes the whole buffer

    def flush(self) -> None:
        """Write what is buffered (lines stay in order: one lock for buffer and stream)."""
        with self.lock:  # type: ignore[union-attr] - created by Handler.__init__
            if not self._buf:
                return
            data = b"\n".join(self._buf).decode() + "\n"
            self._buf.clear()
            if "@" in data:
                data = redact(data)
            try:
                self.stream.write(data)
                self.stream.flush()
            except (OSError, ValueError):  # stderr closed or gone: nothing else to tell
                pass

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Write what is left; the writer thread ends at its next wake-up (not joined here:
        ``logging.shutdown`` calls this with the handler's lock held)."""
        self._closed = True
        self._wake.set()
        self.flush()
        super().close()


class OncePerChange(logging.Filter):
    """Lets a record through only when its message or error differs from the previous one
    (nats-py reports the same refused connection on every reconnect attempt)."""

    def __init__(self) -> None:
        super().__init__()
        self._last: tuple[str, str] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        key = (record.getMessage(), _error_text(exc) if exc is not None else "")
        if key == self._last:
            return False
        self._last = key
        return True


#: nats-py's own error reports (its default ``error_cb`` and its reader), on its client's logger.
NATS_ERRORS = OncePerChange()
NATS_LOGGER = "nats.aio.client"


def configure(level: str = "info", stream: IO[str] | None = None) -> JsonLineHandler:
    """Send every log record to ``stream`` (stderr) as JSON lines: ``gateway`` at ``level``,
    libraries at ``warning`` and above. Replaces a handler installed by an earlier call."""
    lvl = LEVELS[level]
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, JsonLineHandler)]:
        root.removeHandler(old)
        old.close()
    handler = JsonLineHandler(stream)
    root.addHandler(handler)
    root.setLevel(max(lvl, logging.WARNING))
    logging.getLogger("gateway").setLevel(lvl)
    nats = logging.getLogger(NATS_LOGGER)
    if NATS_ERRORS not in nats.filters:
        nats.addFilter(NATS_ERRORS)
    logging.captureWarnings(True)
    return handler


def event(name: str, /, *, level: str = "info", logger: str = "gateway.node", always: bool = False,
          **fields: object) -> None:
    """Log one event line ``{"ts", "level", "event": name, **fields}`` (written at once);
    ``always``: whatever ``log_level`` says (the node's start and stop announcements)."""
    log, no = logging.getLogger(logger), LEVELS[level]
    if always or log.isEnabledFor(no):
        t = time.time()
        log.handle(Line(logger, no, {"ts": round(t, 3), "level": level, "event": name, **fields}, t))


class ConnectionLog:
    """nats-py's connection callbacks, logging one line per change of state and never a line
    per reconnect attempt or a traceback: ``nats_error`` for an error while connected (or the
    first failure to connect), ``nats_disconnected``, ``nats_connected``.

    ``nats.connect(..., **ConnectionLog("governance").callbacks())``; call :meth:`connected`
    when a connect returns and :meth:`closing` before closing the connection.
    """

    def __init__(self, client: str, logger: str = "gateway.nats") -> None:
        self.client = client
        self.logger = logger
        self.up: bool | None = None  # unknown until the first connect or error

    def connected(self) -> None:
        if self.up is not True:
            self.up = True
            event("nats_connected", logger=self.logger, client=self.client)

    def closing(self) -> None:
        """The owner closes the connection: its disconnection is no news."""
        self.up = None

    async def _error(self, exc: Exception) -> None:
        if self.up is not False:  # while down, every reconnect attempt fails alike
            event("nats_error", level="warning", logger=self.logger, client=self.client,
                  error=_error_text(exc))
        if self.up is None:
            self.up = False

    async def _disconnected(self) -> None:
        if self.up:
            self.up = False
            event("nats_disconnected", level="warning", logger=self.logger, client=self.client)

    async def _reconnected(self) -> None:
        self.connected()

    def callbacks(self) -> dict[str, Any]:
        """``error_cb``, ``disconnected_cb`` and ``reconnected_cb`` for ``nats.connect``."""
        return {"error_cb": self._error, "disconnected_cb": self._disconnected,
                "reconnected_cb": self._reconnected}


class AccessLog:
    """The node's log: access lines, events and errors (``node.log``)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._access = logging.getLogger("gateway.access")
        self._node = logging.getLogger("gateway.node")

    def access(self, request_id: str, client: str | None, method: str, path: str,
               status: int, seconds: float) -> None:
        """One access line (batched: written within 100 ms)."""
        if self.enabled and self._access.isEnabledFor(INFO):
            t = time.time()
            self._access.handle(AccessLine(_Access(
                ts=round(t, 3), request_id=request_id, client=client, method=method,
                path=path[:512], status=status, ms=round(seconds * 1000, 3)), t))

    def event(self, name: str, level: str = "info", always: bool = False, **fields: object) -> None:
        """One event line (``info`` unless said), written at once."""
        event(name, level=level, always=always, **fields)

    def error(self, request_id: str, message: str, exc: BaseException | None) -> None:
        """One ``error`` line naming the request (or the component) and the exception."""
        if self._node.isEnabledFor(logging.ERROR):
            t = time.time()
            doc: dict[str, Any] = {"ts": round(t, 3), "level": "error", "event": "error",
                                   "request_id": request_id, "message": message}
            if exc is not None:
                doc["error"] = _error_text(exc)
            self._node.handle(Line("gateway.node", logging.ERROR, doc, t))

    def flush(self) -> None:
        """Write buffered lines now."""
        for h in logging.getLogger().handlers:
            h.flush()

    def start(self) -> None:
        """Nothing to start: the handler writes on its own thread (kept for the node's API)."""

    async def close(self) -> None:
        """Write what is buffered."""
        self.flush()
