"""Parse the human units used on the command line and in config files."""

from __future__ import annotations

import re

from loadtest.errors import LoadTestError

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds from ``30s``, ``2m``, ``1h30m``, ``500ms`` or a bare number of seconds."""
    value = str(text).strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        pos = 0
        seconds = 0.0
        for m in _PART.finditer(value):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _FACTOR[m.group(2)]
            pos = m.end()
        if pos != len(value) or not value:
            raise LoadTestError(
                f"{what}: cannot read {text!r}; use e.g. 30s, 2m, 1h30m, 500ms or seconds"
            ) from None
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise LoadTestError(f"{what}: must be a positive time, got {text!r}")
    return seconds
