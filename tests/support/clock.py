"""A manual-clock Scheduler for unit tests of the core (no threads, no gevent)."""
from __future__ import annotations

import heapq
import itertools
import threading
import typing as t

from bokeh_flask.core.scheduling import finish_in_new_loop


class _Handle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Event:
    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        return self._set


class ManualScheduler:
    """Timers fire only when the test calls :meth:`advance`; ``now()`` is virtual."""

    def __init__(self) -> None:
        self.time = 0.0
        self._queue: list[tuple[float, int, _Handle, t.Callable[[], object]]] = []
        self._order = itertools.count()
        self.errors: list[BaseException] = []
        #: how late every timer fires after its due time (a loaded event loop)
        self.wakeup_latency = 0.0

    def now(self) -> float:
        return self.time

    def call_later(self, delay: float, fn: t.Callable[[], object]) -> _Handle:
        handle = _Handle()
        heapq.heappush(self._queue, (self.time + max(delay, 0.0), next(self._order), handle, fn))
        return handle

    def lock(self) -> t.Any:
        return threading.Lock()

    def event(self) -> _Event:
        return _Event()

    def finish(self, awaitable: t.Awaitable[t.Any]) -> t.Any:
        return finish_in_new_loop(awaitable)

    def in_loop_thread(self) -> bool:
        return True

    @property
    def pending(self) -> int:
        return sum(1 for _, _, h, _ in self._queue if not h.cancelled)

    def advance(self, seconds: float) -> int:
        """Move the clock forward, running every timer that falls due; returns how many ran."""
        until = self.time + seconds
        ran = 0
        while self._queue and self._queue[0][0] <= until:
            due, _, handle, fn = heapq.heappop(self._queue)
            self.time = max(self.time, due + self.wakeup_latency)
            if handle.cancelled:
                continue
            ran += 1
            try:
                fn()
            except BaseException as error:  # recorded so the test can assert on it
                self.errors.append(error)
        self.time = until
        return ran

    def spend(self, seconds: float) -> None:
        """Let time pass *inside* a running callback (a slow callback)."""
        self.time += seconds
