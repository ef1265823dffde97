"""Failed-login limits: after a few failures a name (or an address) waits before trying again.

Pure bookkeeping over a clock, so it is tested with a manual one. Each process keeps
its own counts (with N workers an attacker gets at most N times the allowance).
"""
from __future__ import annotations

import time
import typing as t
from collections import deque

#: failures allowed within the window before logins are refused
DEFAULT_MAX_FAILURES = 5
#: seconds the failures are remembered
DEFAULT_WINDOW_SECONDS = 300.0
#: most keys remembered (the oldest are forgotten first)
MAX_KEYS = 10_000


class LoginLimiter:
    """Counts recent failures per key (a user name, a client address)."""

    def __init__(self, max_failures: int = DEFAULT_MAX_FAILURES, window_seconds: float = DEFAULT_WINDOW_SECONDS,
                 clock: t.Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        cutoff = self._clock() - self.window_seconds
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def retry_after(self, *keys: str) -> float:
        """Seconds until any of ``keys`` may try again (0: now)."""
        wait = 0.0
        for key in keys:
            failures = self._recent(key)
            if len(failures) >= self.max_failures:
                wait = max(wait, failures[-self.max_failures] + self.window_seconds - self._clock())
        return max(wait, 0.0)

    def failed(self, *keys: str) -> None:
        now = self._clock()
        for key in keys:
            if key not in self._failures and len(self._failures) >= MAX_KEYS:
                self._failures.pop(next(iter(self._failures)))
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)
