"""Bounded inflation of client data, token payload checks, and message pre-checks."""
from __future__ import annotations

import base64
import gzip
import json
import zlib

import numpy as np
import pytest
from bokeh.core.serialization import Deserializer
from bokeh.util.token import generate_jwt_token

from bokeh_flask.core.connection import MessageTooBig, ProtocolViolation, ServerConnection, _describe
from bokeh_flask.core.errors import PermissionDenied
from bokeh_flask.core.limits import (INFLATE_FLOOR, InflateLimitExceeded, inflate, install_bounded_bytes_decoder,
                                read_token_payload)
from bokeh_flask.core.sessions import ServerSession
from tests.support.clock import ManualScheduler
from tests.support.recording import RecordingTransport


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_inflate_stops_at_its_limit():
    bomb = zlib.compress(bytes(50 * 1024 * 1024))
    with pytest.raises(InflateLimitExceeded):
        inflate(bomb, 1024 * 1024)
    assert inflate(zlib.compress(b"x" * 1000), 1000) == b"x" * 1000


def test_compressed_bytes_values_are_bounded_but_still_work():
    install_bounded_bytes_decoder()
    values = np.arange(1000, dtype="float64")
    ok = {"type": "bytes", "data": base64.b64encode(gzip.compress(values.tobytes())).decode()}
    assert Deserializer().decode(ok) == values.tobytes()
    bomb = {"type": "bytes", "data": base64.b64encode(gzip.compress(bytes(4 * INFLATE_FLOOR))).decode()}
    with pytest.raises(Exception, match="inflates past"):
        Deserializer().decode(bomb)


@pytest.mark.parametrize("payload, message", [
    ({"session_id": "a", "__bk__zlib_": "0/0"}, "Invalid token"),
    ({"session_id": "a", "headers": "abc"}, "headers must map"),
    ({"session_id": "a", "arguments": [1]}, "arguments must map"),
    ({"session_id": "a", "session_expiry": "soon"}, "session_expiry"),
    ({"no_session": 1}, "names no session"),
    ([1, 2], "not an object"),
])
def test_malformed_token_payloads_are_refused(payload, message):
    with pytest.raises(PermissionDenied, match=message):
        read_token_payload(b64url(json.dumps(payload).encode()))


def test_token_bombs_are_refused_and_real_tokens_read():
    bomb = b64url(zlib.compress(json.dumps({"headers": {"x": "0" * 20_000_000}}).encode()))
    with pytest.raises(PermissionDenied):
        read_token_payload(b64url(json.dumps({"session_id": "a", "__bk__zlib_": bomb}).encode()))
    token = generate_jwt_token("sid", extra_payload={"arguments": {"N": [b"1"]}, "headers": {"A": "b"}})
    payload = read_token_payload(token)
    assert payload["arguments"] == {"N": [b"1"]} and payload["headers"] == {"A": "b"}


def connection(max_bytes: int = 10_000) -> ServerConnection:
    from bokeh.document import Document

    conn = ServerConnection(ServerSession("s", Document(), ManualScheduler()), RecordingTransport(), max_bytes)
    conn.start()
    return conn


@pytest.mark.parametrize("frames, error", [
    (['{"msgtype": "PULL-DOC-REQ"}'], "string 'msgid'"),
    (['{"msgid": "1", "msgtype": "PULL-DOC-REQ", "num_buffers": 1000000000}'], "num_buffers"),
    (['{"msgid": "1", "msgtype": "PULL-DOC-REQ", "num_buffers": -1}'], "num_buffers"),
    (['{"msgid": "1", "msgtype": "PULL-DOC-REQ"}', "null"], "metadata must be a JSON object"),
    (['{"msgid": "1", "msgtype": "PULL-DOC-REQ"}', "{}", "[]"], "content must be a JSON object"),
    (["[1]"], "header must be a JSON object"),
])
def test_message_pre_checks(frames, error):
    conn = connection()
    with pytest.raises(ProtocolViolation, match=error):
        for frame in frames:
            conn.receive(frame)


def test_a_message_over_the_limit_in_all_its_frames_is_too_big():
    conn = connection(max_bytes=1000)
    conn.receive('{"msgid": "1", "msgtype": "PATCH-DOC", "num_buffers": 3}')
    conn.receive("{}")
    conn.receive('{"events": []}')
    with pytest.raises(MessageTooBig):
        for i in range(3):
            conn.receive(json.dumps({"id": str(i)}))
            conn.receive(b"x" * 400)


def test_error_text_is_one_short_line():
    text = _describe(ValueError("x\nWARNING forged log line" + "y" * 10_000))
    assert "\n" not in text and len(text) < 400 and "\\n" in text
