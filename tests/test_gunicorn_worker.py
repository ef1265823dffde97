"""Units of bokeh-flask's gunicorn worker (the processes themselves are in test_num_procs.py)."""
from __future__ import annotations

import queue
import signal

from gunicorn.arbiter import Arbiter

from bokeh_flask.runtime.gunicorn_worker import _queued_signals


class _Master:
    """Stands in for the gunicorn master whose signal handler a forked worker inherits."""

    def __init__(self, pending) -> None:
        self.SIG_QUEUE = pending

    def signal(self, sig, frame) -> None:
        Arbiter.signal(self, sig, frame)  # the installed gunicorn's own handler

    def wakeup(self) -> None:
        """Older gunicorn's handler also wakes the master's loop."""


def test_signals_the_inherited_master_handler_queued_are_found():
    # newer gunicorn makes the queue per arbiter (a SimpleQueue), older one shares a class-level list
    master = _Master([] if isinstance(getattr(Arbiter, "SIG_QUEUE", None), list) else queue.SimpleQueue())
    master.signal(signal.SIGHUP, None)
    master.signal(signal.SIGTERM, None)
    assert _queued_signals(master.signal) == [signal.SIGHUP, signal.SIGTERM]


def test_old_style_list_queues_and_foreign_handlers():
    assert _queued_signals(_Master([signal.SIGINT]).signal) == [signal.SIGINT]
    assert _queued_signals(signal.SIG_DFL) == []
    assert _queued_signals(lambda sig, frame: None) == []
