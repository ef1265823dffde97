"""A Transport that records what a ServerConnection writes."""
from __future__ import annotations

import json
import typing as t


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[list[str | bytes]] = []
        self.pings: list[bytes] = []
        self.closed: tuple[int, str] | None = None
        self.fail_writes = False

    def send_frames(self, frames: t.Sequence[str | bytes]) -> None:
        if self.fail_writes:
            raise OSError("peer went away")
        self.writes.append(list(frames))

    def ping(self, payload: bytes) -> None:
        self.pings.append(payload)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def messages(self) -> list[tuple[dict, dict]]:
        """(header, content) of every bokeh message written, in order."""
        return [(json.loads(w[0]), json.loads(w[2])) for w in self.writes]

    def types(self) -> list[str]:
        return [h["msgtype"] for h, _ in self.messages()]
