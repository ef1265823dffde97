"""Run a session's bokeh callbacks (next tick, timeout, periodic) on a Scheduler.

Bokeh describes each callback with a ``SessionCallback`` object: ``.id``,
``.callback`` and, for the timed kinds, ``.timeout`` or ``.period`` in
milliseconds. This module turns those into scheduler timers and removes them by
id. A periodic callback's next run is scheduled only after the current run has
finished, so runs never overlap or pile up; a slow run is followed at once by
the next one instead of being skipped. Runs keep to the timeline set by the
first (start + n * period), so a 100 ms callback runs ten times a second even
when each wake-up comes a little late.
"""
from __future__ import annotations

import logging
import typing as t

from .scheduling import Handle, Scheduler

log = logging.getLogger(__name__)

Invoker = t.Callable[[t.Callable[[], object]], object]


class _Job:
    """One scheduled callback; ``cancel`` stops it from running again."""

    def __init__(self, scheduler: Scheduler, invoke: Invoker, callback: t.Any) -> None:
        self._scheduler = scheduler
        self._invoke = invoke
        self._callback = callback
        self._handle: Handle | None = None
        self.cancelled = False
        self.period_s: float | None = None
        self._due = scheduler.now()
        if hasattr(callback, "period"):
            self.period_s = callback.period / 1000.0
            self._schedule(self.period_s)
        elif hasattr(callback, "timeout"):
            self._schedule(callback.timeout / 1000.0)
        else:
            self._schedule(0.0)

    def _schedule(self, delay: float) -> None:
        self._due = self._scheduler.now() + delay
        self._handle = self._scheduler.call_later(delay, self._run)

    def _run(self) -> None:
        if self.cancelled:
            return
        due = self._due
        try:
            self._invoke(self._callback.callback)
        except Exception:
            log.exception("Error running session callback %r", self._callback.callback)
        if self.period_s is not None and not self.cancelled:
            # Keep to the timeline (due, due + period, ...) so timer latency does not
            # accumulate; a run that overran its period is followed at once.
            self._schedule(max(due + self.period_s - self._scheduler.now(), 0.0))

    def cancel(self) -> None:
        self.cancelled = True
        if self._handle is not None:
            self._handle.cancel()


class SessionCallbackRunner:
    """Owns the timers of one session's callbacks."""

    def __init__(self, scheduler: Scheduler, invoke: Invoker) -> None:
        self._scheduler = scheduler
        self._invoke = invoke
        self._jobs: dict[str, _Job] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, callback: t.Any) -> None:
        """Start running a bokeh ``SessionCallback``."""
        if callback.id in self._jobs:
            raise ValueError(f"callback {callback.id!r} is already scheduled")
        # One-shot callbacks remove themselves from the document when they run,
        # which reaches ``remove`` and forgets the job.
        self._jobs[callback.id] = _Job(self._scheduler, self._invoke, callback)

    def remove(self, callback: t.Any) -> None:
        """Stop a callback; unknown ids are ignored (one-shots remove themselves)."""
        job = self._jobs.pop(callback.id, None)
        if job is not None:
            job.cancel()

    def remove_all(self) -> None:
        for job in self._jobs.values():
            job.cancel()
        self._jobs.clear()
