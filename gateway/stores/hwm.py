"""The JetStream high-water mark: what a node has seen of its streams, kept outside them.

A wiped or replaced JetStream (a lost R=1 server, a store directory deleted, a stream
re-created) starts its sequences again, so offsets already handed to consumers would be
reused for new records and consumers holding ``after`` would silently miss them. Each node
keeps ``DATA_DIR/jetstream-hwm.json``: per stream, its identity (the creation time
JetStream reports) and the highest sequence the node has seen (appends, reads, stream
info). On connecting (and reconnecting, and on every readiness probe) the streams are
compared with it: a stream created at another time, or whose last sequence is below the
mark, is a reset. ``serve --accept-reset`` starts the mark over.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import msgspec

FILE_NAME = "jetstream-hwm.json"


class StreamMark(msgspec.Struct):
    """What the node saw of one stream."""

    created: str  # ISO 8601, the stream's creation time: its identity
    last_seq: int = 0


def _iso(created: dt.datetime | str | None) -> str:
    if isinstance(created, dt.datetime):
        return created.astimezone(dt.UTC).isoformat()
    return str(created or "")


class HighWaterMark:
    """Stream identities and highest sequences, loaded from and saved to one file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.marks: dict[str, StreamMark] = {}
        self.dirty = False
        try:
            self.marks = msgspec.json.decode(self.path.read_bytes(), type=dict[str, StreamMark])
        except FileNotFoundError:
            pass
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValueError(f"{self.path}: unreadable high-water mark ({exc}); remove it only if "
                             "the JetStream data is known to be intact") from None

    def problem(self, stream: str, created: dt.datetime | str | None, last_seq: int) -> str | None:
        """Why ``stream`` as JetStream reports it now is not the stream this node saw, or None."""
        mark = self.marks.get(stream)
        if mark is None:
            return None
        now = _iso(created)
        if now != mark.created:
            return (f"JetStream stream {stream} was wiped or replaced: it was created {now}, but "
                    f"the stream this node used was created {mark.created} (and reached sequence "
                    f"{mark.last_seq})")
        if last_seq < mark.last_seq:
            return (f"JetStream stream {stream} lost messages: its last sequence is {last_seq}, "
                    f"below {mark.last_seq} that this node has seen")
        return None

    def note_info(self, stream: str, created: dt.datetime | str | None, last_seq: int) -> None:
        """Record the stream's identity (when new) and raise its mark to ``last_seq``."""
        mark = self.marks.get(stream)
        if mark is None:
            self.marks[stream] = StreamMark(_iso(created), last_seq)
            self.dirty = True
        elif last_seq > mark.last_seq:
            mark.last_seq = last_seq
            self.dirty = True

    def note_seq(self, stream: str, seq: int) -> None:
        """Raise the mark of a known stream to a sequence just appended or read."""
        mark = self.marks.get(stream)
        if mark is not None and seq > mark.last_seq:
            mark.last_seq = seq
            self.dirty = True

    def reset(self, stream: str, created: dt.datetime | str | None, last_seq: int) -> None:
        """Start the stream's mark over (the operator accepted a reset)."""
        self.marks[stream] = StreamMark(_iso(created), last_seq)
        self.dirty = True

    def dump(self) -> str | None:
        """The file's new text when the marks changed (and mark them saved), else None.
        Called on the event loop; :meth:`write` may then run on a thread."""
        if not self.dirty:
            return None
        self.dirty = False
        return json.dumps({k: msgspec.to_builtins(v) for k, v in sorted(self.marks.items())},
                          indent=1) + "\n"

    def write(self, text: str) -> None:
        """Write ``text`` to the file (mode 0600, atomically, fsynced)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
