"""Start and stop a Bokeh-compatible server as a subprocess, and watch its resources."""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BENCH_DIR = Path(__file__).resolve().parent
# Servers run from the repository root, so "python -m bokeh_flask" finds an
# in-tree package even when it is not installed.
REPO_DIR = BENCH_DIR.parent
APPS_DIR = BENCH_DIR / "apps"

# The server command is everything before "serve"; it is pluggable through
# run.py's --server-cmd LABEL=COMMAND option.
DEFAULT_COMMANDS: dict[str, list[str]] = {
    "bokeh": [sys.executable, "-m", "bokeh"],
    "bokeh-flask": [sys.executable, "-m", "bokeh_flask"],
}

_RUNNING_RE = re.compile(r"Bokeh app running at:\s*(https?://[^\s]+)")


class ServerStartError(Exception):
    pass


@dataclass
class ServerSpec:
    label: str             # unique label shown in the table ("bokeh", "bokeh#2", ...)
    name: str              # name given to --servers
    command: list[str]     # command prefix, e.g. [python, -m, bokeh]

    def describe(self) -> str:
        return shlex.join(self.command + ["serve"])


def parse_command(text: str) -> list[str]:
    return shlex.split(text)


@dataclass
class ServerProcess:
    spec: ServerSpec
    apps: list[str]                     # app file stems in bench/apps, e.g. ["slider"]
    extra_args: list[str] = field(default_factory=list)
    log_path: Path | None = None
    startup_timeout: float = 45.0
    env: dict[str, str] = field(default_factory=dict)   # added to the server's environment

    host: str = "127.0.0.1"
    port: int = 0
    urls: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen | None = None
    start_seconds: float = 0.0
    _ps: psutil.Process | None = None
    _log_file: object = None

    @property
    def argv(self) -> list[str]:
        files = [str(APPS_DIR / f"{app}.py") for app in self.apps]
        return (self.spec.command + ["serve", *files,
                                     "--port", "0",
                                     "--address", self.host,
                                     "--allow-websocket-origin", "*",
                                     *self.extra_args])

    def start(self) -> "ServerProcess":
        assert self.log_path is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        t0 = time.perf_counter()
        try:
            self.popen = subprocess.Popen(
                self.argv, stdout=self._log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=str(REPO_DIR), env=env,
                start_new_session=True,  # Ctrl-C on the bench must not hit the server first
            )
        except OSError as exc:
            self._close_log()
            raise ServerStartError(f"could not execute {self.argv[0]!r}: {exc}") from exc
        self._ps = psutil.Process(self.popen.pid)

        deadline = t0 + self.startup_timeout
        while True:
            text = self.log_text()
            for url in _RUNNING_RE.findall(text):
                app = url.rstrip("/").rsplit("/", 1)[-1]
                self.urls[app] = url
                port = int(re.match(r"https?://[^/]+:(\d+)", url).group(1))
                self.port = port
            if self.port and all(app in self.urls for app in self.apps):
                break
            rc = self.popen.poll()
            if rc is not None:
                self._close_log()
                raise ServerStartError(
                    f"server exited with code {rc} before it was ready; last output:\n"
                    + _tail(self.log_text(), 12))
            if time.perf_counter() > deadline:
                self.stop()
                raise ServerStartError(
                    f"no 'Bokeh app running at:' line for every app within {self.startup_timeout:.0f}s; "
                    "last output:\n" + _tail(self.log_text(), 12))
            time.sleep(0.05)
        self.start_seconds = time.perf_counter() - t0
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    # -- resources ------------------------------------------------------------

    def processes(self) -> list[psutil.Process]:
        if self._ps is None:
            return []
        procs = [self._ps]
        try:
            procs += self._ps.children(recursive=True)
        except psutil.Error:
            pass
        return procs

    def rss(self) -> int:
        total = 0
        for p in self.processes():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.processes():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    # -- shutdown ---------------------------------------------------------------

    def stop(self) -> None:
        if self.popen is None:
            return
        children = []
        if self.popen.poll() is None:
            try:
                children = self._ps.children(recursive=True) if self._ps else []
            except psutil.Error:
                children = []
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
            except ProcessLookupError:
                pass
        for child in children:  # only processes our server started, by pid
            try:
                if child.is_running():
                    child.kill()
            except psutil.Error:
                pass
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            try:
                self._log_file.close()
            finally:
                self._log_file = None

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _tail(text: str, n: int) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join("    " + ln for ln in lines[-n:]) or "    (no output)"
