"""``--dev``: restart the server when an app's files change (development only).

A greenlet polls the modification times of the apps' files (and any extra
files given to ``--dev``) twice a second. On a change the server stops
cleanly (websockets closed with 1001, so pages reconnect; unload hooks run)
and the process re-executes itself with the same command line.
"""
from __future__ import annotations

import logging
import os
import sys
import typing as t
from pathlib import Path

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
WATCHED_SUFFIXES = {".py", ".ipynb", ".html", ".css", ".js", ".yaml", ".yml", ".json"}


def watched_files(paths: t.Iterable[str]) -> list[Path]:
    """The files of scripts, notebooks and directory apps (their source, templates, themes, static)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += [p for p in path.rglob("*") if p.is_file() and p.suffix in WATCHED_SUFFIXES
                      and "__pycache__" not in p.parts]
        elif path.exists():
            files.append(path)
    return files


def _mtimes(files: t.Iterable[Path]) -> dict[Path, float]:
    times = {}
    for file in files:
        try:
            times[file] = file.stat().st_mtime
        except OSError:
            times[file] = -1.0  # deleted: a change too
    return times


def watch_and_restart(paths: t.Sequence[str], stop_server: t.Callable[[], None]) -> None:
    """Run forever in a greenlet: on the first change, stop the server and re-execute."""
    import gevent

    files = watched_files(paths)
    before = _mtimes(files)
    log.info("Development mode: watching %d files for changes", len(files))
    while True:
        gevent.sleep(POLL_SECONDS)
        now = _mtimes(watched_files(paths))
        changed = sorted(str(f) for f in set(now) | set(before) if now.get(f) != before.get(f))
        if changed:
            log.info("Reloading: %s changed", ", ".join(changed[:3]))
            stop_server()
            os.execv(sys.executable, [sys.executable, "-m", "bokeh_flask", *sys.argv[1:]])
