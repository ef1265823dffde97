"""A cheap load generator for the scaling windows: one client per process.

    python bench/loadgen.py HOST PORT APP OP

OP is ``pages`` (GET /APP on one keep-alive connection), ``pages_new`` (GET
/APP on a new connection each) or ``visits`` (GET /APP keep-alive, then a
websocket with the page's token: ACK, PULL-DOC, close).

Written to keep the client's CPU out of the measurement: one process per
client (no GIL shared between clients), blocking raw sockets, request bytes
built once, client websocket frames masked with the all-zero key (allowed by
RFC 6455, so the payload is sent as is), and only the message headers parsed.

Protocol with the parent (``metrics.loadgen_window``): the process prints
``ready``, reads one line ``go T_END`` (``time.monotonic()`` deadline, the
same clock in every process), runs the op back to back until T_END and
prints one JSON line: ok, bad, late, reasons (why ops failed), error (what ended the client), latencies (s) and the CPU
seconds it used from ``go`` to the end.
"""
from __future__ import annotations

import json
import os
import re
import socket
import struct
import sys
import time

_TOKEN_RE = re.compile(rb'"token"\s*:\s*"([^"]+)"')
_LENGTH_RE = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)
_CHUNKED_RE = re.compile(rb"\r\ntransfer-encoding:\s*chunked", re.I)
_CLOSE_RE = re.compile(rb"\r\nconnection:\s*close", re.I)


class Failed(Exception):
    """The server answered something a browser would not accept."""


class Conn:
    """A TCP connection with a read buffer."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionResetError("connection closed by the server")
        self.buf += data

    def until(self, sep: bytes) -> bytes:
        """Everything up to and including ``sep``."""
        while (i := self.buf.find(sep)) < 0:
            self._more()
        i += len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close(self) -> None:
        self.sock.close()


def http_response(conn: Conn) -> tuple[int, bytes, bool]:
    """(status, body, server closes) of one HTTP/1.1 response."""
    head = conn.until(b"\r\n\r\n")
    status = int(head[9:12])
    if m := _LENGTH_RE.search(head):
        body = conn.exactly(int(m.group(1)))
    elif _CHUNKED_RE.search(head):
        parts = []
        while size := int(conn.until(b"\r\n").split(b";")[0], 16):
            parts.append(conn.exactly(size + 2)[:-2])
        conn.until(b"\r\n")  # no trailers expected
        body = b"".join(parts)
    else:
        raise Failed(f"HTTP {status} response without Content-Length or chunked body")
    return status, body, bool(_CLOSE_RE.search(head))


# -- websocket frames ---------------------------------------------------------

def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A final, masked client frame; the mask key is 0, so the payload is unchanged."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


def server_frame(conn: Conn) -> tuple[int, bytes]:
    """(opcode, payload) of the next data or close frame (pings are skipped)."""
    while True:
        b0, b1 = conn.exactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", conn.exactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", conn.exactly(8))[0]
        if b1 & 0x80:
            raise Failed("masked frame from the server")
        payload = conn.exactly(n)
        opcode = b0 & 0x0F
        if opcode in (0x1, 0x2, 0x8):
            return opcode, payload


def bokeh_message(conn: Conn) -> tuple[dict, bytes]:
    """(header, content) of one Bokeh message; its buffers are read and dropped."""
    frames = []
    for _ in range(3):
        opcode, payload = server_frame(conn)
        if opcode == 0x8:
            raise Failed("server closed the websocket")
        frames.append(payload)
    header = json.loads(frames[0])
    for _ in range(2 * int(header.get("num_buffers") or 0)):
        server_frame(conn)
    if header.get("msgtype") == "ERROR":
        raise Failed(f"server ERROR: {frames[2][:200]!r}")
    return header, frames[2]


# -- the ops ------------------------------------------------------------------

class Client:
    def __init__(self, host: str, port: int, app: str) -> None:
        self.host, self.port = host, port
        self.get = (f"GET /{app} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    "Accept: text/html,*/*\r\n\r\n").encode()
        self.upgrade = (f"GET /{app}/ws HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: YmVuY2ggbG9hZGdlbiAxNg==\r\nSec-WebSocket-Version: 13\r\n"
                        f"Origin: http://{host}:{port}\r\nSec-WebSocket-Protocol: bokeh, ").encode()
        msgid = f"L{os.getpid()}"
        self.pull = b"".join(client_frame(p) for p in (
            json.dumps({"msgid": msgid, "msgtype": "PULL-DOC-REQ"}).encode(), b"{}", b"{}"))
        self.pull_reqid = msgid
        self.close_frame = client_frame(struct.pack("!H", 1000), opcode=0x8)
        self.http: Conn | None = None

    def page(self, keep_alive: bool = True) -> bytes | None:
        """GET the page; its body if it is HTTP 200 with a session token, else None."""
        for attempt in (0, 1):
            fresh = self.http is None
            if fresh:
                self.http = Conn(self.host, self.port)
            try:
                self.http.sock.sendall(self.get)
                status, body, closes = http_response(self.http)
                break
            except (ConnectionError, BrokenPipeError):
                self.drop_http()
                if fresh or attempt:  # only a reused keep-alive socket may be stale
                    raise
        if closes or not keep_alive:
            self.drop_http()
        return body if status == 200 and b'"token"' in body else None

    def drop_http(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None

    def visit(self) -> bool:
        body = self.page()
        if body is None:
            return False
        m = _TOKEN_RE.search(body)
        ws = Conn(self.host, self.port)
        try:
            ws.sock.sendall(self.upgrade + m.group(1) + b"\r\n\r\n")
            head = ws.until(b"\r\n\r\n")
            if head[9:12] != b"101":
                raise Failed(f"websocket upgrade answered {head[:40]!r}")
            header, _ = bokeh_message(ws)
            if header.get("msgtype") != "ACK":
                raise Failed(f"expected ACK, got {header.get('msgtype')}")
            ws.sock.sendall(self.pull)
            header, content = bokeh_message(ws)
            if header.get("msgtype") != "PULL-DOC-REPLY" or header.get("reqid") != self.pull_reqid:
                raise Failed(f"expected PULL-DOC-REPLY, got {header.get('msgtype')}")
            if b"Slider" not in content:
                raise Failed("the pulled document has no Slider")
            # close as a browser does: send a close frame, wait for the server's
            ws.sock.sendall(self.close_frame)
            while server_frame(ws)[0] != 0x8:
                pass
            return True
        finally:
            ws.close()


def main(argv: list[str]) -> int:
    host, port, app, op = argv[0], int(argv[1]), argv[2], argv[3]
    client = Client(host, port, app)
    run = {"pages": lambda: client.page() is not None,
           "pages_new": lambda: client.page(keep_alive=False) is not None,
           "visits": client.visit}[op]
    print("ready", flush=True)
    line = sys.stdin.readline().split()
    if line[:1] != ["go"]:
        return 1
    t_end = float(line[1])
    cpu0 = time.process_time()
    ok = bad = late = 0
    latencies: list[float] = []
    reasons: list[str] = []     # why ops were not counted (the first few)
    error = None                # the exception that ended this client, if any
    clock = time.monotonic
    try:
        while (t := clock()) < t_end:
            try:
                good = run()
            except Failed as exc:
                good = False
                if len(reasons) < 3:
                    reasons.append(str(exc))
            done = clock()
            if not good:
                bad += 1
            elif done <= t_end:
                ok += 1
                latencies.append(round(done - t, 6))
            else:
                late += 1
    except Exception as exc:  # noqa: BLE001 - a socket error ends this client, as in client_window
        error = repr(exc)
    client.drop_http()
    print(json.dumps({"ok": ok, "bad": bad, "late": late, "reasons": reasons, "error": error,
                      "latencies": latencies, "cpu_s": time.process_time() - cpu0}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
