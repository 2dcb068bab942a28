"""Wait for a condition, not for a fixed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_until(
    pred: Callable[[], Any | Awaitable[Any]],
    timeout: float = 10.0,
    every: float = 0.05,
    *,
    what: str = "condition",
) -> Any:
    """Poll ``pred`` (a function or a coroutine function) until it returns something true,
    and return that; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s")
        await asyncio.sleep(every)
