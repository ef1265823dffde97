"""The :class:`~bokeh_flask.core.scheduling.Scheduler` on gevent.

Timers are greenlets started with ``spawn_later``; ``async def`` user code runs
on a private asyncio loop in gevent's native thread pool, so awaiting real
asyncio work (``await asyncio.sleep(0.5)``) blocks only the calling greenlet.
"""
from __future__ import annotations

import logging
import time
import typing as t

import gevent
import gevent.event
import gevent.lock
import gevent.monkey

from ..core.scheduling import Handle, finish_in_new_loop

log = logging.getLogger(__name__)

T = t.TypeVar("T")


class _GreenletHandle:
    """Cancels a timer greenlet, but never interrupts one that already started."""

    __slots__ = ("_greenlet", "started", "cancelled")

    def __init__(self) -> None:
        self._greenlet: gevent.Greenlet | None = None
        self.started = False
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        if self._greenlet is not None and not self.started:
            self._greenlet.kill(block=False)


class GeventScheduler:
    """Greenlet timers, gevent locks, and asyncio work in the native thread pool.

    ``call_later`` may be called from any OS thread (bokeh documents that
    ``add_next_tick_callback`` is the way other threads reach a document): calls
    from a foreign thread are handed to the hub that created the scheduler.
    """

    def __init__(self) -> None:
        self._loop = gevent.get_hub().loop
        self._thread_id = _native_thread_id()

    def now(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, fn: t.Callable[[], object]) -> Handle:
        handle = _GreenletHandle()
        if _native_thread_id() != self._thread_id:
            self._loop.run_callback_threadsafe(self._start, handle, delay, fn)
        else:
            self._start(handle, delay, fn)
        return handle

    @staticmethod
    def _start(handle: _GreenletHandle, delay: float, fn: t.Callable[[], object]) -> None:

        def run() -> None:
            if handle.cancelled:
                return
            handle.started = True
            try:
                fn()
            except Exception:
                log.exception("Scheduled call %r failed", fn)

        handle._greenlet = gevent.spawn_later(max(delay, 0.0), run)

    def lock(self) -> t.ContextManager[t.Any]:
        return gevent.lock.Semaphore()

    def event(self) -> t.Any:
        return gevent.event.Event()

    def in_loop_thread(self) -> bool:
        return _native_thread_id() == self._thread_id

    def finish(self, awaitable: t.Awaitable[T]) -> T:
        pool = gevent.get_hub().threadpool
        return t.cast(T, pool.apply(finish_in_new_loop, (awaitable,)))


def _native_thread_id() -> int:
    """The OS thread id, even when ``threading`` is monkey-patched."""
    get_ident = gevent.monkey.get_original("_thread", "get_ident")
    return t.cast(int, get_ident())
