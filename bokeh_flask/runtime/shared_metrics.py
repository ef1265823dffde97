"""``/metrics`` for the whole server under ``--num-procs``: each worker leaves its snapshot in a file.

The workers of one master share a private directory (the relay's, mode 0700).
Each writes ``metrics-<pid>.json`` there when it starts, every second and
whenever it answers ``/metrics``, replacing the file at once (write, then rename); the worker
that answers sums the files of every live worker. A worker that exits removes
its file; the file of one that was killed is skipped (and removed) once its pid
is gone. Counters of a worker that exited leave the sum, which Prometheus reads
as a counter reset, as it would for a restarted server.
"""
from __future__ import annotations

import json
import logging
import os
import typing as t
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "metrics-"


class FileMetrics:
    """:class:`~bokeh_flask.core.ports.SharedMetrics` on files in a private directory."""

    def __init__(self, directory: str, pid: int | None = None) -> None:
        self.directory = Path(directory)
        self.pid = os.getpid() if pid is None else pid
        self.path = self.directory / f"{PREFIX}{self.pid}.json"

    def publish(self, snapshot: t.Mapping[str, t.Any]) -> None:
        temporary = self.path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(snapshot), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as error:
            log.warning("Could not leave this worker's metrics in %s (%s)", self.directory, error)

    def collect(self) -> list[dict[str, t.Any]]:
        snapshots = []
        for path in sorted(self.directory.glob(f"{PREFIX}*.json")):
            pid = path.stem[len(PREFIX):]
            if not pid.isdigit() or not _alive(int(pid)):
                _remove(path)
                continue
            try:
                snapshots.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue  # a sibling removing its file as it exits
        return snapshots

    def remove(self) -> None:
        _remove(self.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
