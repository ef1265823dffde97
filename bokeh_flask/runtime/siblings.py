"""``gunicorn -k gevent -w N``: gunicorn's own gevent worker, set up as bokeh-flask's worker class is.

bokeh-flask's worker class (``-k bokeh_flask.gunicorn_worker.GeventWorker``) knows at boot
how many workers share its master, and starts the relay between them. Under gunicorn's
own gevent worker, the command Flask users type, nothing tells the app that; so on the
first request a worker takes (its environ carries ``gunicorn.socket``) it counts its
master's children. With siblings it switches on what makes several processes correct:
pages leave building the document to the websocket's worker, template pages' websockets
are relayed to the worker that built them (a shared private directory named after the
master, as under bokeh-flask's worker class), and ``/metrics`` sums the workers. What it
started is stopped when the worker exits. Linux only (``/proc``); elsewhere a worker
stays on its own, as before.
"""
from __future__ import annotations

import atexit
import logging
import os
import typing as t
from pathlib import Path

from ..core.state import ProcessInfo, live_states
from .publishing import share_feeds_with_siblings
from .relay import WorkerRelay, remove_if_empty, shared_relay_dir
from .shared_metrics import FileMetrics

log = logging.getLogger(__name__)


def children_of(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (from ``/proc``; empty where there is none)."""
    listed = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(child) for child in listed.read_text().split()]
    except OSError:
        pass
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields and len(fields) > 1 and fields[1] == str(pid):
            children.append(int(stat.parent.name))
    return children


class GunicornSiblings:
    """Joins a gunicorn worker to its siblings, once, on its first request."""

    def __init__(self) -> None:
        self.checked = False
        self.relay: WorkerRelay | None = None
        self.metrics: FileMetrics | None = None
        self.directory: str | None = None

    def join(self, environ: t.Mapping[str, t.Any], app: t.Any) -> None:
        """Called on every request; does its work on the first one a gunicorn worker takes."""
        if self.checked:
            return
        self.checked = True
        if "gunicorn.socket" not in environ or ProcessInfo.managed_worker:
            return  # not gunicorn, or bokeh-flask's own worker class, which did this at boot
        siblings = len(children_of(os.getppid()))
        if siblings <= 1:
            return
        ProcessInfo.sibling_processes = siblings
        self.directory = shared_relay_dir(os.getppid())
        if self.directory is None:
            return  # logged: pages are still lazy, so documents are built once
        self.metrics = FileMetrics(self.directory)
        relay = WorkerRelay(self.directory, app)
        self.relay = relay if relay.start() else None
        for state in live_states():
            state.shared_metrics = self.metrics
            state.relay = self.relay
        share_feeds_with_siblings(live_states(), self.directory)
        atexit.register(self.leave)
        log.info("gunicorn worker %d: %d workers share this server; relaying websockets between them",
                 os.getpid(), siblings)

    def leave(self) -> None:
        if self.relay is not None:
            self.relay.stop()
        if self.metrics is not None:
            self.metrics.remove()
        for state in live_states():
            if state.publications is not None and state.publications.feed is not None:
                state.publications.feed.stop()  # its wake-up socket is in the directory too
        if self.directory is not None:
            remove_if_empty(self.directory)


#: this process's (one per process: gunicorn forks its workers)
SIBLINGS = GunicornSiblings()
