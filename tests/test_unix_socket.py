"""``--unix-socket PATH``: pages and websockets over a unix socket (a proxy's upstream)."""
from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys

import pytest
import websocket
from bokeh.util.token import generate_jwt_token, generate_session_id

from tests.support.servers import REPO_ROOT

APP = REPO_ROOT / "tests" / "apps" / "argv_app.py"
pytestmark = pytest.mark.slow


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=20)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


@pytest.mark.parametrize("procs", ["1", "2"])
def test_pages_and_websockets_over_a_unix_socket(serve, tmp_path, procs):
    path = str(tmp_path / "bokeh.sock")
    server = serve.command([sys.executable, "-m", "bokeh_flask", "serve", str(APP), "--unix-socket", path,
                            "--num-procs", procs, "--allow-websocket-origin", "example.com"],
                           re.compile(r"Bokeh app running at: unix:\S+/argv_app(?P<port>)"))
    connection = UnixHTTPConnection(path)
    connection.request("GET", "/argv_app", headers={"Host": "example.com"})
    response = connection.getresponse()
    assert response.status == 200 and b'"token":' in response.read()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    ws = websocket.create_connection("ws://example.com/argv_app/ws", socket=sock, origin="http://example.com",
                                     subprotocols=["bokeh", generate_jwt_token(generate_session_id())], timeout=20)
    try:
        assert '"ACK"' in ws.recv()
    finally:
        ws.close()
    server.stop()


@pytest.mark.parametrize("extra, message", [
    (["--port", "8080"], "--port is not supported with a unix socket"),
    (["--address", "127.0.0.1"], "not supported with a unix socket"),
])
def test_unix_socket_with_a_port_or_address_is_an_error(tmp_path, extra, message):
    result = subprocess.run([sys.executable, "-m", "bokeh_flask", "serve", str(APP), "--unix-socket",
                             str(tmp_path / "s.sock"), *extra], capture_output=True, text=True, timeout=60,
                            cwd=REPO_ROOT)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and message in lines[0], result.stderr
