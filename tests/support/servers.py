"""Start a server (bokeh-flask or, for comparison, bokeh serve) as a subprocess.

:func:`server_command` chooses the command in one place: ``python -m
bokeh_flask serve`` by default, ``python -m bokeh serve`` with
``BOKEH_FLASK_TEST_SERVER=bokeh``. Servers listen on 127.0.0.1 on a port the
OS picks; the port is read from the ``Bokeh app running at:`` log line.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"

SERVER_ENV_VAR = "BOKEH_FLASK_TEST_SERVER"
STARTUP_TIMEOUT = 60.0  # seconds until the "Bokeh app running at" line must appear
STOP_TIMEOUT = 15.0  # seconds to wait after SIGTERM before SIGKILL

RUNNING_AT = re.compile(r"(?:Bokeh app running at|Publishing at): (?P<scheme>https?)://(?P<host>[^/:\s]+):(?P<port>\d+)(?P<path>/\S*)?")


def server_command() -> list[str]:
    """The command (without app files/flags) used to start every test server."""
    choice = os.environ.get(SERVER_ENV_VAR, "bokeh_flask").strip().lower()
    if choice == "bokeh":
        return [sys.executable, "-m", "bokeh", "serve"]
    if choice in ("", "bokeh_flask", "bokeh-flask"):
        return [sys.executable, "-m", "bokeh_flask", "serve"]
    raise pytest.UsageError(f"{SERVER_ENV_VAR}={choice!r}: expected 'bokeh' or 'bokeh_flask'")


# ---------------------------------------------------------------------------
# Server subprocess
# ---------------------------------------------------------------------------

class RunningServer(str):
    """A started server. As a string it is the base URL ``http://127.0.0.1:PORT``.

    Attributes/helpers:
      ``port``, ``pid``, ``app_paths`` (from the startup lines seen so far),
      ``browser_url`` (``http://localhost:PORT``, use it for page loads),
      ``app_url(name)``, ``output()`` (all stdout+stderr so far),
      ``mark()`` (current output length), ``wait_for_output(pattern, timeout,
      since=mark)``, ``stop()`` (returns the output).
    """

    proc: subprocess.Popen
    port: int

    def __new__(cls, base_url: str, proc: subprocess.Popen, port: int, reader: _OutputReader):
        self = super().__new__(cls, base_url)
        self.proc = proc
        self.port = port
        self._reader = reader
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def browser_url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def app_paths(self) -> list[str]:
        return [m.group("path") or "/" for m in RUNNING_AT.finditer(self.output())]

    def app_url(self, name: str) -> str:
        return f"{self.browser_url}/{name.lstrip('/')}"

    def output(self) -> str:
        return self._reader.text()

    def mark(self) -> int:
        """Position in the output; pass it as ``since=`` to only match later output."""
        return len(self.output())

    def wait_for_output(self, pattern: str | re.Pattern, timeout: float = 10.0, since: int = 0) -> re.Match:
        """Block until ``pattern`` (regex) matches the output after ``since``; fail with the output otherwise."""
        match = self._reader.wait_for(re.compile(pattern), timeout, since)
        if match is None:
            pytest.fail(f"server output did not match {pattern!r} within {timeout}s:\n{self.output()}")
        return match

    def stop(self) -> str:
        """Terminate the server by PID (SIGTERM, then SIGKILL), wait, and return its output."""
        _stop_process(self.proc)
        self._reader.join()
        return self.output()


class _OutputReader:
    """Drains a process's combined stdout/stderr on a thread so waits never block on a full pipe."""

    def __init__(self, proc: subprocess.Popen):
        self._proc = proc
        self._lines: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"server-output-{proc.pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for line in self._proc.stdout:
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def eof(self) -> bool:
        with self._cond:
            return self._eof

    def text(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def wait_for(self, pattern: re.Pattern, timeout: float, since: int = 0) -> re.Match | None:
        """Wait (condition variable, no polling) until pattern matches or the stream ends."""
        found: list[re.Match] = []

        def ready() -> bool:
            match = pattern.search("".join(self._lines), since)
            if match:
                found.append(match)
            return bool(match) or self._eof

        with self._cond:
            self._cond.wait_for(ready, timeout=timeout)
        return found[0] if found else None

    def join(self) -> None:
        self._thread.join(timeout=STOP_TIMEOUT)


def _stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


def start_process(cmd: list[str], ready: re.Pattern, env: dict[str, str] | None = None,
                  what: str = "Bokeh app running at: http://...") -> RunningServer:
    """Start ``cmd`` and wait for ``ready`` (a pattern with a ``port`` group) in its output."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, encoding="utf-8", errors="replace", bufsize=1)
    reader = _OutputReader(proc)
    match = reader.wait_for(ready, STARTUP_TIMEOUT)
    if match is None:
        exited = reader.eof
        _stop_process(proc)
        reader.join()
        why = (f"exited with code {proc.returncode} before logging" if exited
               else f"did not log within {STARTUP_TIMEOUT:.0f}s")
        pytest.fail(f"server {why} {what!r}\ncommand: {' '.join(cmd)}\noutput:\n{reader.text()}")
    port_text = match.groupdict().get("port")
    port = int(port_text) if port_text else 0  # no port: a unix socket
    assert not port_text or port != 0, f"server reported port 0 instead of the bound port:\n{reader.text()}"
    return RunningServer(f"http://127.0.0.1:{port}", proc, port, reader)


def _start_server(files, extra_args=(), env: dict[str, str] | None = None) -> RunningServer:
    cmd = [*server_command(), *(str(f) for f in files),
           "--port", "0", "--address", "127.0.0.1", *(str(a) for a in extra_args)]
    return start_process(cmd, RUNNING_AT, env)


class _ServerFactory:
    def __init__(self):
        self._servers: list[RunningServer] = []

    def __call__(self, *files, extra_args=(), env: dict[str, str] | None = None) -> RunningServer:
        return self.adopt(_start_server(files, extra_args, env))

    def command(self, cmd: list[str], ready: re.Pattern, env: dict[str, str] | None = None) -> RunningServer:
        """Start any server command (gunicorn, flask run, an example site)."""
        return self.adopt(start_process(cmd, ready, env, what=ready.pattern))

    def adopt(self, server: RunningServer) -> RunningServer:
        self._servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()




def gunicorn_executable() -> str:
    """The ``gunicorn`` command installed next to this Python (the test is skipped without one)."""
    found = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("gunicorn is not installed next to this Python")
    return found


def gunicorn_private_args() -> list[str]:
    """No control socket: recent gunicorns (26+) open one at a fixed path (~/.gunicorn/gunicorn.ctl)
    that concurrently running gunicorns would fight over; older ones have no such option."""
    from gunicorn.config import KNOWN_SETTINGS

    return ["--no-control-socket"] if any("--no-control-socket" in (s.cli or ()) for s in KNOWN_SETTINGS) else []
