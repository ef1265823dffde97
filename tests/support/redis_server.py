"""A ``redis-server`` of the test's own on a loopback port (never the system's service), run by
:class:`~bokeh_flask.runtime.redis_child.RedisChild`."""
from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from bokeh_flask.runtime.redis_child import RedisChild


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``start()`` / ``stop()`` a redis-server persisting to ``directory`` (append-only file)."""

    def __init__(self, directory: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.skip("redis-server is not installed (scripts/test installs Debian's)")
        self.executable = executable
        self.directory = directory
        self.port = free_port()
        self.child = RedisChild(self.port, directory, executable)

    @property
    def url(self) -> str:
        return self.child.url

    def start(self) -> None:
        self.child.start()
        assert self.child.owned, f"another Redis answers on port {self.port}: not the test's own"

    def stop(self) -> None:
        self.child.stop()
