"""The one error type the CLI turns into a clear message and a non-zero exit."""

from __future__ import annotations


class LoadTestError(Exception):
    """A user-facing problem (bad flag, bad file, unreachable host); printed without traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
