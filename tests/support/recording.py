"""A Transport that records what a ServerConnection writes."""
from __future__ import annotations

import json
import typing as t


class RecordingTransport:
    """Records writes, pings and the close.

    A connection's writer task runs on the scheduler: give ``flush`` (e.g. a
    manual clock's ``advance(0)``) and every read of what was written runs it first.
    """

    def __init__(self, flush: t.Callable[[], object] | None = None) -> None:
        self._flush = flush or (lambda: None)
        self._writes: list[list[str | bytes]] = []
        self._closed: tuple[int, str] | None = None
        self.pings: list[bytes] = []
        self.fail_writes = False
        #: what blocked_for() reports (a test sets it to play a client that stopped reading)
        self.stalled_seconds = 0.0
        self.aborted = False

    def send_frames(self, frames: t.Sequence[str | bytes]) -> None:
        if self.fail_writes:
            raise OSError("peer went away")
        self._writes.append(list(frames))

    def ping(self, payload: bytes) -> None:
        self.pings.append(payload)

    def close(self, code: int, reason: str) -> None:
        self._closed = (code, reason)

    def blocked_for(self) -> float:
        return self.stalled_seconds

    def abort(self) -> None:
        self.aborted = True

    @property
    def writes(self) -> list[list[str | bytes]]:
        self._flush()
        return self._writes

    @property
    def closed(self) -> tuple[int, str] | None:
        self._flush()
        return self._closed

    def messages(self) -> list[tuple[dict, dict]]:
        """(header, content) of every bokeh message written, in order."""
        return [(json.loads(w[0]), json.loads(w[2])) for w in self.writes]

    def types(self) -> list[str]:
        return [h["msgtype"] for h, _ in self.messages()]


def feed_message(connection: t.Any, message: t.Any) -> None:
    """Give a connection a bokeh message the way a client's websocket delivers it, frame by frame."""
    connection.receive(message.header_json)
    connection.receive(message.metadata_json)
    connection.receive(message.content_json)
    for buffer in message.buffers:
        connection.receive(json.dumps(buffer.ref))
        connection.receive(buffer.to_bytes())
