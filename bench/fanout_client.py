"""Read-only viewers for the fanout metric: many websockets in one process.

    python bench/fanout_client.py CONFIG_JSON

CONFIG_JSON: {"host", "port", "path" (the websocket path), "token", "viewers",
"stall" (how many of them stop reading after the PULL-DOC: 0 or 1)}.

Every viewer opens the websocket with ``["bokeh", token]``, waits for the
ACK, pulls the document (as a page does), and from then on only reads: it
never sends anything. The owner's patches set the slider's ``value`` to
their send time (``time.time()``); a viewer's delivery latency is the wall
clock when the bytes were read minus that time (same machine, same clock).
A stalled viewer (``stall``) is opened the same way with a small receive
buffer, sends PULL-DOC-REQs for ``STALL_FILL_BYTES`` of replies (5 MiB,
~1200 requests for the fanout document) and never reads again: the replies
fill its socket and the server's kernel send buffer (which grows to 4 MiB on
loopback; 2.2 MB were seen) before the window starts; the parent waits
for that.

Protocol with the parent (``metrics.m_fanout``), as ``loadgen.py``: prints
``ready {"ports": [...], "stalled_port": p}``; reads ``go T0 T1 T_END``
(wall clock); reads every socket until T_END with one epoll loop (sockets
non-blocking, frames parsed by hand, only the ``"new":<ts>`` of the content
looked at); prints one JSON line: per-viewer counts of patches sent in
[T0, T1) received, their latencies (ms), patches received from outside the
window, viewers the server closed, errors, the CPU seconds of the loop and,
for the stalled viewer, the bytes waiting unread in its socket.
"""
from __future__ import annotations

import fcntl
import json
import re
import selectors
import socket
import struct
import sys
import termios
import time

from loadgen import Conn, Failed, bokeh_message, client_frame

_TS_RE = re.compile(rb'"attr":"value","new":([0-9.eE+-]+)')
STALL_RCVBUF = 2048   # the kernel doubles it and keeps a minimum
#: a stalled viewer sends PULL-DOC-REQs for this many bytes of replies (at most STALL_MAX_PULLS) and
#: never reads them: more than the kernel's buffers on both ends hold (tcp_wmem max is 4 MiB here)
STALL_FILL_BYTES = 5 * 1024 * 1024
STALL_MAX_PULLS = 4000
SLOW_S = 0.05         # deliveries slower than this are listed per patch (when in the window)


class Viewer(Conn):
    def __init__(self, host: str, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(60)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.count = 0
        self.closed = False


def open_viewer(cfg: dict, rcvbuf: int | None = None, extra_pulls: int = 0) -> Viewer:
    host, port = cfg["host"], cfg["port"]
    v = Viewer(host, port, rcvbuf)
    v.sock.sendall((f"GET {cfg['path']} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: YmVuY2ggZmFub3V0IDE2IQ==\r\nSec-WebSocket-Version: 13\r\n"
                    f"Origin: http://{host}:{port}\r\nSec-WebSocket-Protocol: bokeh, {cfg['token']}\r\n\r\n").encode())
    head = v.until(b"\r\n\r\n")
    if head[9:12] != b"101":
        raise Failed(f"websocket upgrade answered {head[:60]!r}")
    header, _ = bokeh_message(v)
    if header.get("msgtype") != "ACK":
        raise Failed(f"expected ACK, got {header.get('msgtype')}")
    msgid = f"F{id(v)}"
    v.sock.sendall(b"".join(client_frame(p) for p in (
        json.dumps({"msgid": msgid, "msgtype": "PULL-DOC-REQ"}).encode(), b"{}", b"{}")))
    while True:
        header, content = bokeh_message(v)
        if header.get("reqid") == msgid:
            break
    if b"Slider" not in content:
        raise Failed("the pulled document has no Slider")
    if extra_pulls:
        # a stalled viewer asks for the document again and again and never reads the
        # replies: they fill its socket (and the server's send buffer) before the window
        extra_pulls = min(STALL_MAX_PULLS, STALL_FILL_BYTES // max(1, len(content)) + 1)
        v.sock.settimeout(10)
        v.sock.sendall(b"".join(client_frame(p) for i in range(extra_pulls) for p in (
            json.dumps({"msgid": f"{msgid}.{i}", "msgtype": "PULL-DOC-REQ"}).encode(), b"{}", b"{}")))
    return v


def main(argv: list[str]) -> int:
    cfg = json.loads(argv[0])
    viewers = [open_viewer(cfg) for _ in range(cfg["viewers"] - cfg.get("stall", 0))]
    stalled = [open_viewer(cfg, STALL_RCVBUF, extra_pulls=1) for _ in range(cfg.get("stall", 0))]
    print("ready " + json.dumps({"ports": [v.sock.getsockname()[1] for v in viewers],
                                 "stalled_ports": [v.sock.getsockname()[1] for v in stalled]}), flush=True)
    line = sys.stdin.readline().split()
    if line[:1] != ["go"]:
        return 1
    t0, t1, t_end = (float(x) for x in line[1:4])
    cpu0 = time.process_time()
    sel = selectors.DefaultSelector()
    for v in viewers:
        v.sock.setblocking(False)
        sel.register(v.sock, selectors.EVENT_READ, v)
    lat: list[float] = []
    slow: dict[float, float] = {}   # patch send time -> its slowest delivery, when over SLOW_S
    outside = 0
    errors: list[str] = []
    clock = time.time
    unpack_h, unpack_q = struct.Struct("!H").unpack_from, struct.Struct("!Q").unpack_from
    pending = [v for v in viewers if v.buf]   # bytes read with the PULL-DOC reply
    while (now := clock()) < t_end:
        ready = [(key.data, True) for key, _ in sel.select(min(0.05, t_end - now))]
        ready += [(v, False) for v in pending]
        pending = []
        now = clock()
        for v, readable in ready:
            if readable:
                try:
                    data = v.sock.recv(262144)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    data = b""
                    errors.append(repr(exc))
                if not data:
                    v.closed = True
                    sel.unregister(v.sock)
                    continue
                buf = v.buf + data if v.buf else data
            else:
                buf = v.buf
            pos, n = 0, len(buf)
            while n - pos >= 2:
                b0, b1 = buf[pos], buf[pos + 1]
                size, hl = b1 & 0x7F, 2
                if size == 126:
                    if n - pos < 4:
                        break
                    size, hl = unpack_h(buf, pos + 2)[0], 4
                elif size == 127:
                    if n - pos < 10:
                        break
                    size, hl = unpack_q(buf, pos + 2)[0], 10
                end = pos + hl + size
                if end > n:
                    break
                op = b0 & 0x0F
                if op == 0x1:
                    m = _TS_RE.search(buf, pos + hl, end)
                    if m is not None:
                        ts = float(m.group(1))
                        if t0 <= ts < t1:
                            v.count += 1
                            lat.append(now - ts)
                            if now - ts > SLOW_S:
                                slow[ts] = max(slow.get(ts, 0.0), now - ts)
                        else:
                            outside += 1
                elif op == 0x8:
                    v.closed = True
                pos = end
            v.buf = buf[pos:]
    cpu_s = time.process_time() - cpu0
    unread = []
    for v in stalled:
        unread.append(struct.unpack("i", fcntl.ioctl(v.sock, termios.FIONREAD, b"\0\0\0\0"))[0])
    print(json.dumps({"counts": [v.count for v in viewers], "lat_ms": [round(x * 1000, 3) for x in lat],
                      "outside": outside, "slow": sorted(slow.items()), "closed": sum(v.closed for v in viewers), "errors": errors[:3],
                      "cpu_s": cpu_s, "stalled_unread": unread}), flush=True)
    for v in viewers + stalled:
        v.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
