"""The ``redis-server`` that ``--backend redis`` starts when no ``--redis-url`` is given.

It listens on loopback only, keeps its data in ``<data directory>/redis`` (append-only
file, so documents survive a restart) and is stopped when this process exits. When a
Redis already answers on the port (another bokeh-flask process on this host started
it, say) it is used as it is and left running: only a server this object started is
stopped by it.
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from ..core.errors import ConfigError

log = logging.getLogger(__name__)

#: how long ``start()`` waits for the new server to answer PING (seconds)
START_TIMEOUT_SECONDS = 10.0
#: how long ``stop()`` waits after SIGTERM before SIGKILL (seconds)
STOP_TIMEOUT_SECONDS = 5.0
LOGFILE = "redis-server.log"
_PING = b"*1\r\n$4\r\nPING\r\n"
_INSTALL = "install Debian's redis-server package, or give --redis-url / --no-start-redis"


class RedisChild:
    """A ``redis-server`` on ``127.0.0.1:port``, started by :meth:`start` unless one answers there already."""

    def __init__(self, port: int, directory: str | os.PathLike[str], executable: str | None = None) -> None:
        self.port = int(port)
        self.directory = Path(directory).absolute() / "redis"  # absolute: redis-server changes into --dir first
        #: the redis-server to run; ``None``: the one on ``PATH``
        self.executable = executable if executable is not None else shutil.which("redis-server")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The process id of the server this object started, while it runs."""
        return self._proc.pid if self.owned and self._proc is not None else None

    @property
    def owned(self) -> bool:
        """True while this object runs the server (False when it reuses one already there)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Make sure a Redis answers on the port, starting one if none does; ConfigError if it cannot."""
        if self.owned:
            return
        if self._answer_once_loaded() == "PONG":
            log.info("Using the Redis already running on 127.0.0.1:%d (not started here, so not stopped here)",
                     self.port)
            return
        self._check_port_free()
        executable = self.executable
        if not executable or not os.access(executable, os.X_OK):
            raise ConfigError(f"redis-server was not found ({executable or 'not on PATH'}): {_INSTALL}")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        logfile = self.directory / LOGFILE
        self._proc = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", *_loopback_addresses(), "--dir", str(self.directory),
             "--appendonly", "yes", "--save", "", "--daemonize", "no", "--protected-mode", "yes",
             "--logfile", str(logfile)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        atexit.register(self.stop)
        log.info("Started redis-server (pid %d) on 127.0.0.1:%d, data in %s", self._proc.pid, self.port,
                 self.directory)
        self._wait_until_ready(logfile)

    def _wait_until_ready(self, logfile: Path) -> None:
        """Poll PING until the new server answers; ConfigError (and nothing left running) if it does not."""
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._answer() == "PONG":
                if self._proc.poll() is None:
                    return
                # ours exited (the port was taken meanwhile) but another Redis answers: use that one
                log.info("Using the Redis another process started on 127.0.0.1:%d meanwhile", self.port)
                self._forget()
                return
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)  # polling a condition with a deadline: nothing to wait on but the port
        self.stop()
        raise ConfigError(f"redis-server did not start on 127.0.0.1:{self.port} within {START_TIMEOUT_SECONDS:g} s; "
                          f"give another --redis-port, or --redis-url. Its log ({logfile}) ends:\n{_tail(logfile)}")

    def _check_port_free(self) -> None:
        """ConfigError if something that is not a usable Redis holds the port."""
        answer = self._answer()
        if answer is None:
            return
        refusing = answer.startswith(("NOAUTH", "DENIED", "ERR", "LOADING"))
        what = "a Redis that does not answer PING" if refusing else "something that is not Redis"
        raise ConfigError(f"Port {self.port} on 127.0.0.1 is taken by {what} ({answer!r}): give another --redis-port, "
                          "or point --redis-url at the Redis to use")

    def _answer_once_loaded(self) -> str | None:
        """:meth:`_answer`, waiting (up to the start timeout) while a Redis there is still loading its data."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        answer = self._answer()
        while answer is not None and answer.startswith("LOADING") and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a condition with a deadline: Redis says when it has loaded only to PING
            answer = self._answer()
        return answer

    def _answer(self) -> str | None:
        """What ``127.0.0.1:port`` answers to PING ("PONG" from a Redis), "" if it answers nothing
        usable, None if nothing listens."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                try:
                    sock.sendall(_PING)
                    reply = sock.recv(256)
                except OSError:
                    return ""
        except OSError:
            return None
        line = reply.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        return line[1:] if line[:1] in ("+", "-") else ""

    def stop(self) -> None:
        """Stop the server if this object started it (SIGTERM, then SIGKILL after 5 s); else do nothing."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("redis-server (pid %d) did not stop within %g s: killing it", proc.pid,
                            STOP_TIMEOUT_SECONDS)
                proc.kill()
                proc.wait()
            log.info("Stopped redis-server (pid %d) on 127.0.0.1:%d", proc.pid, self.port)
        self._forget()

    def _forget(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._proc = None
        atexit.unregister(self.stop)


def _loopback_addresses() -> list[str]:
    """127.0.0.1, and ::1 where this host has it."""
    addresses = ["127.0.0.1"]
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        addresses.append("::1")
    except OSError:
        pass
    return addresses


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
