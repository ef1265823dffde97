"""Viewers that stop reading: their session and its other viewers go on at full speed.

Several websockets share one session of a streaming app (16 KiB every 100 ms).
Some stop reading (a small receive buffer, then nothing read): without
back-pressure handling the server's writes to them block while the document
lock is held, and every viewer of the session freezes (``bokeh serve`` 3.9 does
that). Here the readers must get >= 90 % of the ticks with request round
trips at p99 <= 250 ms for 20 s, the server's memory must stay bounded, and
each stalled client must be closed with a valid close code.
"""
from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest
import websocket

from tests.support.bokeh_ws import BokehWS, ConnectionDropped, ServerClosed, make_token, new_session_id

pytestmark = pytest.mark.slow

APP = Path(__file__).parent / "apps" / "stream_app.py"
WATCH_SECONDS = 20.0
TICKS_EXPECTED = WATCH_SECONDS / 0.1
WRITE_TIMEOUT = 3
SERVER_ARGS = ("--websocket-write-timeout", str(WRITE_TIMEOUT), "--keep-alive", "1000",
               "--log-format", "%(levelname)s %(name)s: %(message)s")
STALL_LOG = r"Closing a websocket of session .* with 1008: the client is not reading"


class Reader(threading.Thread):
    """Reads everything; every 200 ms asks SERVER-INFO-REQ and times the reply."""

    def __init__(self, client: BokehWS, seconds: float) -> None:
        super().__init__(daemon=True)
        self.client, self.seconds = client, seconds
        self.patches = 0
        self.round_trips: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            end = time.monotonic() + self.seconds
            pending: tuple[str, float] | None = None
            next_request = time.monotonic()
            while (now := time.monotonic()) < end:
                if pending is None and now >= next_request:
                    pending = (self.client.send_message("SERVER-INFO-REQ"), now)
                    next_request = now + 0.2
                message = self.client.recv_message(timeout=2.0)
                if message.msgtype == "PATCH-DOC":
                    self.patches += 1
                elif pending is not None and message.reqid == pending[0]:
                    self.round_trips.append(time.monotonic() - pending[1])
                    pending = None
        except BaseException as error:  # reported by the test
            self.error = error


class Resumer(threading.Thread):
    """A stalled client that starts reading again once the server has found every stalled client out."""

    def __init__(self, client: BokehWS, server, mark: int, stalled: int) -> None:
        super().__init__(daemon=True)
        self.client, self.server, self.mark, self.stalled = client, server, mark, stalled
        self.closed: object = None

    def run(self) -> None:
        deadline = time.monotonic() + WATCH_SECONDS
        while stall_count(self.server, self.mark) < self.stalled and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            self.closed = self.client.wait_closed(timeout=10)
        except BaseException as error:  # reported by the test
            self.closed = error


def stall_count(server, mark: int) -> int:
    return len(re.findall(STALL_LOG, server.output()[mark:]))


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _stalled_client(server, token: str) -> BokehWS:
    """A client with a tiny receive window that reads its ACK and then nothing more."""
    client = BokehWS.connect(server, "stream_app", token=token,
                             sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    assert client.recv_message().msgtype == "ACK"
    return client


@pytest.mark.parametrize("readers, stalled", [(1, 1), (20, 5)])
def test_stalled_viewers_do_not_hold_up_the_session(serve, readers, stalled):
    server = serve(APP, extra_args=SERVER_ARGS)
    token = make_token(new_session_id())
    process = psutil.Process(server.pid)
    first = BokehWS.connect(server, "stream_app", token=token)
    assert first.recv_message().msgtype == "ACK"
    first.pull()  # the session exists and streams from now on
    clients = [first] + [BokehWS.connect(server, "stream_app", token=token) for _ in range(readers - 1)]
    for client in clients[1:]:
        assert client.recv_message().msgtype == "ACK"
    rss_before = process.memory_info().rss
    mark = server.mark()
    stuck = [Resumer(_stalled_client(server, token), server, mark, stalled) for _ in range(stalled)]
    threads = [Reader(client, WATCH_SECONDS) for client in clients]
    for thread in threads + stuck:
        thread.start()
    for thread in threads + stuck:
        thread.join(WATCH_SECONDS + 30)
    rss_growth = process.memory_info().rss - rss_before

    for thread in threads:
        assert thread.error is None, repr(thread.error)
        assert thread.patches >= 0.9 * TICKS_EXPECTED, f"{thread.patches} of {TICKS_EXPECTED:.0f} ticks"
        assert len(thread.round_trips) >= WATCH_SECONDS / 0.4  # asked every 200 ms, when a tick has arrived
        assert p99(thread.round_trips) <= 0.25, f"p99 round trip {p99(thread.round_trips) * 1000:.0f} ms"
    assert rss_growth <= 256 * 2**20, f"RSS grew {rss_growth / 2**20:.0f} MB"

    # each stalled client was found out; reading again, it finds the close frame
    assert stall_count(server, mark) == stalled
    for resumer in stuck:
        assert isinstance(resumer.closed, ServerClosed) and resumer.closed.code == 1008, resumer.closed
    for client in clients:
        client.close()


def test_a_vanished_reader_is_dropped_without_a_close_frame(serve):
    """A stalled client that never reads again is cut off after the write timeout (no frame can reach it)."""
    server = serve(APP, extra_args=SERVER_ARGS)
    token = make_token(new_session_id())
    reader = BokehWS.connect(server, "stream_app", token=token)
    assert reader.recv_message().msgtype == "ACK"
    reader.pull()
    mark = server.mark()
    stuck = _stalled_client(server, token)
    server.wait_for_output(STALL_LOG, since=mark, timeout=30)
    server.wait_for_output(r"did not take its close frame; dropping it", since=mark, timeout=2 * WRITE_TIMEOUT + 5)
    with pytest.raises((ServerClosed, ConnectionDropped, websocket.WebSocketException, OSError)):
        while True:  # what the kernel still held, then the end of the connection
            stuck.recv_frame(timeout=5)
    assert reader.pull().msgtype == "PULL-DOC-REPLY"  # the session goes on
    reader.close()
