"""Wait for a condition that nothing signals (a file filling up), bounded in time."""
from __future__ import annotations

import time
import typing as t

T = t.TypeVar("T")
POLL_SECONDS = 0.05


def wait_until(condition: t.Callable[[], T], timeout: float) -> T:
    """Re-check ``condition`` until it is truthy; fail with a clear message after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {condition}")
        time.sleep(POLL_SECONDS)
