"""The websocket frames the transport writes itself (no extension negotiated) are what a client reads."""
from __future__ import annotations

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, TextMessage

from bokeh_flask.runtime.transport import plain_frame_pieces


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 3_000_000])
def test_plain_frames_are_read_back_by_a_websocket_client(size):
    text, blob = "é" * (size // 2), bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(b"".join(plain_frame_pieces(["{}", text, blob])))
    events = list(client.events())
    assert [type(e) for e in events] == [TextMessage, TextMessage, BytesMessage]
    assert events[0].data == "{}" and events[1].data == text and events[2].data == blob
    assert all(e.message_finished for e in events)
