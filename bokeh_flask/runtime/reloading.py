"""``--dev``: restart the server when an app's files change (development only).

The watching is werkzeug's reloader, the one ``flask run --debug`` uses: the
child polls the modification time of every module it has imported (so a
helper module an app imports counts) plus the apps' own files: scripts,
notebooks and everything in a directory app (templates, themes, static files)
and any extra files given to ``--dev``. As with werkzeug, a parent process
runs the server in a child with the same interpreter and command line
(``sys.orig_argv``, so flags such as ``-X dev`` or ``-W error`` are kept) and
starts a new child whenever the old one exits with status 3.

Two things differ from werkzeug's loop: the child stops the server cleanly
before it exits (websockets close with 1001 so pages reconnect to the new
child, unload hooks run), and the parent passes SIGINT and SIGTERM on to the
child instead of leaving it running.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import typing as t
from pathlib import Path

import gevent
from werkzeug._reloader import StatReloaderLoop

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
WATCHED_SUFFIXES = {".py", ".ipynb", ".html", ".css", ".js", ".yaml", ".yml", ".json"}
#: werkzeug's marker for "this process is the child that serves"
CHILD_ENV = "WERKZEUG_RUN_MAIN"
#: exit status that asks the parent for a new child (werkzeug's convention)
RESTART_STATUS = 3


def watched_files(paths: t.Iterable[str]) -> list[str]:
    """The apps' own files: a directory app's source, templates, themes and static files; a script or
    notebook, and the Python modules beside it (helpers it imports: bokeh 3.10 does not leave them in
    ``sys.modules``, where werkzeug's reloader looks)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += [p for p in path.rglob("*") if p.is_file() and p.suffix in WATCHED_SUFFIXES
                      and "__pycache__" not in p.parts]
        elif path.exists():
            files += [path, *(p for p in path.parent.glob("*.py") if p != path)]
    return sorted({str(f.resolve()) for f in files})


class _StoppingReloader(StatReloaderLoop):  # type: ignore[misc]
    """werkzeug's polling reloader, polled from a thread, stopping the server before a restart.

    werkzeug scans every imported module's file and walks the directories on
    ``sys.path``: blocking work that would stall every greenlet of the server,
    so each scan runs in gevent's thread pool and only its result comes back.
    """

    def __init__(self, stop_server: t.Callable[[], None], **options: t.Any) -> None:
        super().__init__(**options)
        self._stop_server = stop_server
        self._changed: str | None = None
        #: the server stopped for another reason (SIGINT, SIGTERM): end the loop
        self.server_stopped = False

    def trigger_reload(self, filename: str) -> None:
        self._changed = filename  # called by werkzeug's scan, in the pool's thread

    def run(self) -> None:
        pool = gevent.get_hub().threadpool
        while not self.server_stopped:
            pool.apply(self.run_step)
            if self._changed is not None:
                log.info("Reloading: %s changed", self._changed)
                try:
                    self._stop_server()
                finally:
                    sys.exit(RESTART_STATUS)
            gevent.sleep(self.interval)
        sys.exit(0)


def run_children() -> int:
    """The parent: run the same command as a child until it exits other than to restart.

    SIGINT and SIGTERM are passed on to the child, which stops cleanly; the
    parent then exits with the child's status (werkzeug's parent would exit at
    once and leave the child running).
    """
    command = [sys.executable, *sys.orig_argv[1:]]  # interpreter flags included
    environ = {**os.environ, CHILD_ENV: "true"}
    while True:
        log.info("Starting the server in a child process (--dev)")
        child = subprocess.Popen(command, env=environ, close_fds=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda number, frame: child.send_signal(number))
        status = child.wait()
        if status != RESTART_STATUS:
            return status


def run_with_reloader(serve: t.Callable[[], None], stop_server: t.Callable[[], None],
                      paths: t.Sequence[str]) -> t.NoReturn:
    """In the parent, start children until one exits other than to restart; in a child, ``serve``.

    ``serve`` runs the server until it stops; the child then exits with status 0.
    """
    if os.environ.get(CHILD_ENV) != "true":
        sys.exit(run_children())
    extra = watched_files(paths)
    reloader = _StoppingReloader(stop_server, extra_files=extra, interval=POLL_SECONDS)
    log.info("Development mode: watching %d files and the modules they import", len(extra))

    def serve_then_exit() -> None:
        try:
            serve()
        finally:
            reloader.server_stopped = True

    with reloader:
        gevent.spawn(serve_then_exit)
        reloader.run()
    sys.exit(0)
