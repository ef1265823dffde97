"""The publishing client's websocket code over a real simple-websocket connection.

Until the publishing views exist, the client's :class:`DocumentConnection` is driven
against an application's ``/<app>/ws``, which speaks the same bokeh protocol: the
handshake with the ``["bokeh", token]`` subprotocols, ACK, PUSH-DOC with a binary
buffer, a PATCH-DOC of later changes, and PULL-DOC-REPLY into a new document.
"""
from __future__ import annotations

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource, Div
from bokeh.util.token import generate_jwt_token, generate_session_id
from simple_websocket import Client

from bokeh_flask.client.connection import DocumentConnection

pytestmark = pytest.mark.slow


def test_push_patch_and_pull_over_a_real_websocket(serve):
    server = serve("tests/apps/whoami_app.py")
    url = server.replace("http", "ws", 1) + "/whoami_app/ws"
    token = generate_jwt_token(generate_session_id(secret_key=None, signed=False), secret_key=None, signed=False)
    websocket = Client.connect(url, subprotocols=["bokeh", token], headers={})
    assert websocket.subprotocol == "bokeh"
    connection = DocumentConnection(websocket, setter=object(), timeout=10, url=url)
    try:
        connection.wait_for_ack()
        document = Document()
        source = ColumnDataSource(data={"x": np.arange(1000, dtype="float64")})
        div = Div(text="a")
        document.add_root(source)
        document.add_root(div)
        connection.push_document(document)
        div.text = "b"
        source.stream({"x": np.array([5.0])})
        assert connection.send_changes() == 2
        assert connection.send_changes() == 0
        pulled = connection.pull_document()
        assert connection.document is pulled
        [pulled_source] = [m for m in pulled.roots if isinstance(m, ColumnDataSource)]
        [pulled_div] = [m for m in pulled.roots if isinstance(m, Div)]
        assert pulled_div.text == "b"
        assert list(pulled_source.data["x"][-2:]) == [999.0, 5.0]
    finally:
        connection.close()
    assert connection.closed
