"""What the core needs from a concurrency runtime, and a thread-based runtime.

The core (sessions, callbacks, cleanup) never imports gevent: it asks a
:class:`Scheduler` for timers, locks and a way to finish coroutines. The
gevent runtime lives in :mod:`bokeh_flask.greenlets`; :class:`ThreadScheduler`
here serves a plain threaded WSGI server such as ``flask run``; tests use a
manual clock.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import sys
import threading
import time
import typing as t

log = logging.getLogger(__name__)

T = t.TypeVar("T")


class Handle(t.Protocol):
    """A scheduled call that can be cancelled before it starts."""

    def cancel(self) -> None: ...


class Scheduler(t.Protocol):
    """Timers, locks and coroutine completion for the core."""

    def now(self) -> float:
        """Monotonic time in seconds."""

    def call_later(self, delay: float, fn: t.Callable[[], object]) -> Handle:
        """Run ``fn`` once after ``delay`` seconds, concurrently with the caller."""

    def lock(self) -> t.ContextManager[t.Any]:
        """A new mutual-exclusion lock that blocks only the current task."""

    def event(self) -> t.Any:
        """A new event with ``set()``, ``is_set()`` and ``wait(timeout)``."""

    def finish(self, awaitable: t.Awaitable[T]) -> T:
        """Run an ``async def`` body (user code, may await asyncio) to completion."""

    def in_loop_thread(self) -> bool:
        """True in the thread whose tasks this scheduler runs (its locks are safe to take there)."""


class CoroutineSuspended(RuntimeError):
    """A coroutine given to :func:`run_sync` waited on something."""


def run_sync(awaitable: t.Awaitable[T]) -> T:
    """Finish a coroutine that never really suspends (bokeh's own ``async def`` helpers).

    Bokeh's protocol receiver and application hooks are declared ``async`` but
    complete without waiting; this drives them without an event loop.
    """
    coro = awaitable.__await__() if not inspect.iscoroutine(awaitable) else awaitable
    try:
        yielded = coro.send(None)
    except StopIteration as done:
        return t.cast(T, done.value)
    coro.close()
    raise CoroutineSuspended(f"coroutine suspended on {yielded!r}; run it with Scheduler.finish()")


def finish_in_new_loop(awaitable: t.Awaitable[T]) -> T:
    """Run ``awaitable`` on a private asyncio loop (in a helper thread if this one runs a loop)."""

    async def _await() -> T:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _await()).result()


class _TimerHandle:
    def __init__(self, timer: threading.Timer) -> None:
        self._timer = timer

    def cancel(self) -> None:
        self._timer.cancel()


class ThreadScheduler:
    """A :class:`Scheduler` on OS threads, for servers that run a thread per request."""

    def now(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, fn: t.Callable[[], object]) -> Handle:
        timer = threading.Timer(max(delay, 0.0), _logged(fn))
        timer.daemon = True
        try:
            timer.start()
        except RuntimeError as error:
            if not (sys.is_finalizing() or "shutdown" in str(error)):
                raise
            log.debug("Not scheduling %r: the interpreter is shutting down", fn)  # a periodic job's last tick
        return _TimerHandle(timer)

    def lock(self) -> t.ContextManager[t.Any]:
        return threading.Lock()

    def event(self) -> t.Any:
        return threading.Event()

    def finish(self, awaitable: t.Awaitable[T]) -> T:
        return finish_in_new_loop(awaitable)

    def in_loop_thread(self) -> bool:
        return False  # no loop: every thread is one of many


def _logged(fn: t.Callable[[], object]) -> t.Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception:
            log.exception("Scheduled call %r failed", fn)

    return run
