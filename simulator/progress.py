"""A progress bar on stderr, shown only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`update(fraction)`; silent unless the stream is a TTY."""

    def __init__(
        self, label: str, stream: TextIO | None = None, enabled: bool | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self.t0 = time.monotonic()
        self._last = -1

    def update(self, fraction: float, note: str = "") -> None:
        if not self.enabled:
            return
        pct = int(fraction * 100)
        if pct == self._last and fraction < 1:
            return
        self._last = pct
        bar = "#" * (pct // 4) + "." * (25 - pct // 4)
        el = time.monotonic() - self.t0
        self.stream.write(f"\r{self.label} [{bar}] {pct:3d}% {el:6.1f}s {note}")
        if fraction >= 1:
            self.stream.write("\n")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled and self._last < 100:
            self.update(1.0)
