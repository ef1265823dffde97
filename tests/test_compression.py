"""``--websocket-compression-level``: permessage-deflate, off by default, with inflation bounded."""
from __future__ import annotations

import base64
import os
import socket
import struct
import time
import zlib

import pytest
import simple_websocket

from tests.support.bokeh_ws import BokehWS, make_token, new_session_id
from tests.support.servers import REPO_ROOT

pytestmark = pytest.mark.slow

APP = REPO_ROOT / "tests" / "apps" / "argv_app.py"
LIMIT = 1024 * 1024


def upgrade(server, token: str, offer: str = "permessage-deflate") -> tuple[socket.socket, str, bytes]:
    """A raw websocket handshake offering ``offer``: (socket, response head, bytes read after it)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /argv_app/ws HTTP/1.1\r\nHost: localhost:{server.port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Sec-WebSocket-Protocol: bokeh, {token}\r\nSec-WebSocket-Extensions: {offer}\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed during the handshake"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return sock, head.decode("latin-1"), rest


def read_close_code(sock: socket.socket, data: bytes, seconds: float) -> int | None:
    """Read server frames until a close frame; its code (None if the connection ended without one)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        while len(data) >= 2:
            opcode, length, offset = data[0] & 0x0F, data[1] & 0x7F, 2
            if length == 126:
                length, offset = struct.unpack("!H", data[2:4])[0], 4
            elif length == 127:
                length, offset = struct.unpack("!Q", data[2:10])[0], 10
            if len(data) < offset + length:
                break
            payload, data = data[offset:offset + length], data[offset + length:]
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0]
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    raise AssertionError("no close frame in time")


def masked_frame(opcode: int, payload: bytes, rsv1: bool) -> bytes:
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    head = bytes([first, 0x80 | (n if n < 126 else 126 if n < 65536 else 127)])
    head += b"" if n < 126 else struct.pack("!H", n) if n < 65536 else struct.pack("!Q", n)
    return head + b"\0\0\0\0" + payload  # a zero mask leaves the payload as it is


def test_no_compression_unless_asked(serve):
    server = serve(APP)
    sock, head, _ = upgrade(server, make_token(new_session_id()))
    sock.close()
    assert head.startswith("HTTP/1.1 101") and "permessage-deflate" not in head.lower()


def test_compression_is_negotiated_and_sessions_work(serve):
    server = serve(APP, extra_args=["--websocket-compression-level", "6", "--websocket-compression-mem-level", "7"])
    sock, head, _ = upgrade(server, make_token(new_session_id()))
    sock.close()
    assert "sec-websocket-extensions: permessage-deflate" in head.lower()
    client = simple_websocket.Client(f"ws://127.0.0.1:{server.port}/argv_app/ws",  # offers permessage-deflate
                                     subprotocols=["bokeh", make_token(new_session_id())])
    try:
        header = client.receive(timeout=10)
        assert '"msgtype": "ACK"' in header or '"msgtype":"ACK"' in header
    finally:
        client.close()


def test_a_deflate_bomb_closes_its_connection_with_1009_and_nothing_else(serve):
    server = serve(APP, extra_args=["--websocket-compression-level", "1",
                                    "--websocket-max-message-size", str(LIMIT)])
    bystander = BokehWS.connect(server, "argv_app")
    assert bystander.recv_message().msgtype == "ACK"
    sock, head, rest = upgrade(server, make_token(new_session_id()))
    assert "permessage-deflate" in head.lower()
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = deflate.compress(b"{" + b" " * (200 * LIMIT)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < LIMIT // 4  # small on the wire, 200 MiB once inflated
    sock.sendall(masked_frame(1, bomb[:-4], rsv1=True))
    started = time.monotonic()
    assert read_close_code(sock, rest, 10) == 1009
    assert time.monotonic() - started < 2.0
    sock.close()
    server.wait_for_output(r"1009")
    assert bystander.pull().msgtype == "PULL-DOC-REPLY"  # the other session goes on
    bystander.close()
