"""``bokeh.client.push_session`` in another process uploads a document a browser then shows."""
from __future__ import annotations

import uuid

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.support.client import run_client  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PUSH = """
    import json, sys
    from bokeh.client import push_session
    from bokeh.document import Document
    from bokeh.models import Div
    doc = Document()
    doc.add_root(Div(text=sys.argv[3], name="pushed", css_classes=["pushed"]))
    session = push_session(doc, session_id=sys.argv[2], url=sys.argv[1])
    session.force_roundtrip()
    print(json.dumps({"id": session.id}))
    session.close()
"""


def test_pushed_document_is_shown_in_the_browser(serve, page, console):
    server = serve()  # an empty app at /
    session_id = f"pushed-{uuid.uuid4().hex}"
    text = f"hello from push_session {uuid.uuid4().hex[:8]}"
    assert run_client(PUSH, server.browser_url + "/", session_id, text) == {"id": session_id}
    page.goto(f"{server.browser_url}/?bokeh-session-id={session_id}")
    expect(page.locator(".pushed")).to_have_text(text)
    console.assert_clean()
