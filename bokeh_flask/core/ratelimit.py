"""Failed-login limits: after a few failures a name (or an address) waits before trying again.

The failures are counted where every worker and host sees them when the store can keep
them (the file store and Redis do: :class:`FailureLog`), else in this process. Pure
bookkeeping over a clock, so it is tested with a manual one.
"""
from __future__ import annotations

import time
import typing as t
from collections import deque

#: failures allowed within the window before logins are refused
DEFAULT_MAX_FAILURES = 5
#: seconds the failures are remembered
DEFAULT_WINDOW_SECONDS = 300.0
#: most keys remembered in memory (the oldest are forgotten first)
MAX_KEYS = 10_000


class FailureLog(t.Protocol):
    """Where failures are kept (a store that offers it shares them between processes and hosts)."""

    def record_failure(self, key: str, at: float, window_seconds: float) -> None:
        """Remember a failure at ``at``; failures older than ``window_seconds`` may be forgotten."""

    def recent_failures(self, key: str, since: float) -> list[float]:
        """The times of ``key``'s failures after ``since``, oldest first."""

    def clear_failures(self, key: str) -> None: ...


class MemoryFailureLog:
    """A :class:`FailureLog` in this process's memory."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}

    def record_failure(self, key: str, at: float, window_seconds: float) -> None:
        if key not in self._failures and len(self._failures) >= MAX_KEYS:
            self._failures.pop(next(iter(self._failures)))
        failures = self._failures.setdefault(key, deque())
        failures.append(at)
        while failures and failures[0] <= at - window_seconds:
            failures.popleft()

    def recent_failures(self, key: str, since: float) -> list[float]:
        return [at for at in self._failures.get(key, ()) if at > since]

    def clear_failures(self, key: str) -> None:
        self._failures.pop(key, None)


def failure_log_of(store: t.Any) -> FailureLog:
    """The store itself when it keeps failures for every process, else one in memory."""
    if all(callable(getattr(store, name, None)) for name in ("record_failure", "recent_failures", "clear_failures")):
        return t.cast(FailureLog, store)
    return MemoryFailureLog()


class LoginLimiter:
    """Refuses logins for a key (a user name, a client address) after too many recent failures."""

    def __init__(self, log: FailureLog | None = None, max_failures: int = DEFAULT_MAX_FAILURES,
                 window_seconds: float = DEFAULT_WINDOW_SECONDS, clock: t.Callable[[], float] = time.time) -> None:
        self.log = log if log is not None else MemoryFailureLog()
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self._clock = clock  # wall time: shared logs compare times of several hosts

    def retry_after(self, *keys: str) -> float:
        """Seconds until all of ``keys`` may try again (0: now)."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            failures = self.log.recent_failures(key, now - self.window_seconds)
            if len(failures) >= self.max_failures:
                wait = max(wait, failures[-self.max_failures] + self.window_seconds - now)
        return max(wait, 0.0)

    def failed(self, *keys: str) -> None:
        now = self._clock()
        for key in keys:
            self.log.record_failure(key, now, self.window_seconds)

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self.log.clear_failures(key)
