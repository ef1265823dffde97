"""RedisChild: the real redis-server on a loopback port of the test's own."""
from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from bokeh_flask.core.errors import ConfigError
from bokeh_flask.runtime.redis_child import RedisChild
from tests.support.redis_server import free_port

REPO = Path(__file__).resolve().parents[1]

redis = pytest.importorskip("redis")
if shutil.which("redis-server") is None:
    pytest.skip("redis-server is not installed (scripts/test installs Debian's)", allow_module_level=True)


@pytest.fixture
def children():
    """RedisChild objects made by a test, stopped after it (only those they own)."""
    made: list[RedisChild] = []
    yield made
    for child in made:
        child.stop()


def make(children, port: int, directory, **kwargs) -> RedisChild:
    child = RedisChild(port, directory, **kwargs)
    children.append(child)
    return child


def client(child: RedisChild):
    return redis.Redis.from_url(child.url, socket_timeout=5, decode_responses=True)


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_it_starts_a_loopback_server_keeping_its_data_in_a_private_folder(children, tmp_path):
    child = make(children, free_port(), tmp_path)
    child.start()
    assert child.owned and child.pid is not None and child.url == f"redis://127.0.0.1:{child.port}/0"
    redis_client = client(child)
    assert redis_client.ping() is True
    assert redis_client.config_get("bind")["bind"].split()[0] == "127.0.0.1"
    assert redis_client.config_get("protected-mode")["protected-mode"] == "yes"
    assert redis_client.config_get("appendonly")["appendonly"] == "yes"
    assert redis_client.config_get("dir")["dir"] == str(tmp_path / "redis")
    assert stat.S_IMODE(os.stat(tmp_path / "redis").st_mode) == 0o700
    child.stop()
    assert not child.owned and child.pid is None and not listening(child.port)


def test_data_survives_a_stop_and_a_start(children, tmp_path):
    child = make(children, free_port(), tmp_path)
    child.start()
    client(child).set("kept", "yes")
    child.stop()
    child.start()
    assert child.owned and client(child).get("kept") == "yes"


def test_a_second_child_on_the_same_port_reuses_the_server_and_does_not_stop_it(children, tmp_path):
    port = free_port()
    first = make(children, port, tmp_path / "first")
    first.start()
    second = make(children, port, tmp_path / "second")
    second.start()
    assert first.owned and not second.owned and second.pid is None
    client(second).set("shared", "1")
    second.stop()
    assert client(first).get("shared") == "1"  # still running
    assert not (tmp_path / "second" / "redis").exists()
    first.stop()
    assert not listening(port)


@pytest.mark.parametrize("how", ["missing file", "not on PATH"])
def test_a_missing_redis_server_names_the_fix(children, tmp_path, monkeypatch, how):
    if how == "missing file":
        child = make(children, free_port(), tmp_path, executable=str(tmp_path / "no-redis-server"))
    else:
        monkeypatch.setenv("PATH", str(tmp_path))
        child = make(children, free_port(), tmp_path)
    with pytest.raises(ConfigError, match="install Debian's redis-server package, or give --redis-url / "
                                          "--no-start-redis"):
        child.start()
    assert not child.owned


def test_a_port_held_by_something_else_names_the_fix(children, tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        done = threading.Event()

        def answer_like_http() -> None:
            while not done.is_set():
                try:
                    conn, _ = server.accept()
                except OSError:
                    continue
                with conn:
                    conn.recv(256)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer_like_http, daemon=True)
        thread.start()
        try:
            child = make(children, server.getsockname()[1], tmp_path)
            with pytest.raises(ConfigError, match="taken by something that is not Redis.*give another --redis-port"):
                child.start()
            assert not child.owned and not (tmp_path / "redis").exists()
        finally:
            done.set()
            thread.join(5)


def test_the_server_stops_when_the_process_that_started_it_exits(tmp_path):
    port = free_port()
    script = textwrap.dedent(f"""
        from bokeh_flask.runtime.redis_child import RedisChild
        child = RedisChild({port}, {str(tmp_path)!r})
        child.start()
        print(child.pid, flush=True)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.split()[-1])
    deadline = time.monotonic() + 10
    while listening(port) and time.monotonic() < deadline:
        time.sleep(0.05)  # polled with a deadline
    if listening(port):  # atexit did not stop it: clean up the server this test started, then fail
        os.kill(pid, 15)
        pytest.fail("redis-server outlived the process that started it")
