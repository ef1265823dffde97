"""``bokeh_flask.Server`` used from Python, as bokeh's ``Server`` is (in a fresh process)."""
from __future__ import annotations

import pytest

from tests.support.client import run_client

pytestmark = pytest.mark.slow

SCRIPT = """
    from gevent import monkey; monkey.patch_all()
    import json, re, urllib.request
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.application.handlers.lifecycle import LifecycleHandler
    from bokeh.models import Div
    from bokeh_flask import Server
    from bokeh_flask.errors import ConfigError

    events = []

    def modify(doc):
        doc.add_root(Div(text="from Server"))

    lifecycle = LifecycleHandler()
    lifecycle._on_server_loaded = lambda ctx: events.append("loaded")
    lifecycle._on_server_unloaded = lambda ctx: events.append("unloaded")
    app = Application(FunctionHandler(modify), lifecycle)

    server = Server({"/app": app}, port=0, address="127.0.0.1", prefix="/pre",
                    keep_alive_milliseconds=0, unused_session_lifetime_milliseconds=60000)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    page = urllib.request.urlopen(base + "/pre/app?bokeh-session-id=chosen").read().decode()
    sessions = server.get_sessions("/app")
    result = {
        "port_bound": server.port != 0,
        "prefix": server.prefix,
        "address": server.address,
        "session_ids": [s.id for s in sessions],
        "all_sessions": len(server.get_sessions()),
        "get_session_text": server.get_session("/app", "chosen").document.roots[0].text,
        "page_has_token": '"token":' in page,
        "events_before_stop": list(events),
    }
    try:
        Server(modify, io_loop=object())
    except ConfigError as error:
        result["io_loop_error"] = str(error)
    server.stop()
    result["events"] = events
    result["sessions_after_stop"] = len(server.get_sessions())
    print(json.dumps(result))
"""


def test_server_api_mirrors_bokeh():
    result = run_client(SCRIPT)
    assert result == {
        "port_bound": True,
        "prefix": "/pre",
        "address": "127.0.0.1",
        "session_ids": ["chosen"],
        "all_sessions": 1,
        "get_session_text": "from Server",
        "page_has_token": True,
        "events_before_stop": ["loaded"],
        "io_loop_error": result["io_loop_error"],
        "events": ["loaded", "unloaded"],
        "sessions_after_stop": 0,
    }
    assert "do not pass io_loop" in result["io_loop_error"]


FROM_SETTINGS = """
    from gevent import monkey; monkey.patch_all()
    import json, os, re, urllib.request
    from bokeh.models import Div
    from bokeh.util.token import check_session_id_signature, get_session_id
    from bokeh_flask import Server
    from bokeh_flask.errors import ConfigError

    server = Server.from_settings({"/app": lambda doc: doc.add_root(Div(text="x"))}, port=0,
                                  address="127.0.0.1")
    server.start()
    page = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/app").read().decode()
    token = re.search(r'"token":"([^"]+)"', page).group(1)
    session_id = get_session_id(token)
    signed = check_session_id_signature(session_id, secret_key=os.environ["BOKEH_SECRET_KEY"].encode(),
                                        signed=True)
    icon = None
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/favicon.ico")
    except urllib.error.HTTPError as error:
        icon = error.code
    server.stop()
    try:
        Server.from_settings({"/app": lambda doc: None}, auth_provider=object())
        refused = None
    except ConfigError as error:
        refused = str(error)
    print(json.dumps({"signed": signed, "icon": icon, "ssl": refused}))
"""


def test_from_settings_reads_bokeh_environment(monkeypatch):
    from bokeh.util.token import generate_secret_key

    monkeypatch.setenv("BOKEH_SECRET_KEY", generate_secret_key())
    monkeypatch.setenv("BOKEH_SIGN_SESSIONS", "yes")
    monkeypatch.setenv("BOKEH_ICO_PATH", "none")
    result = run_client(FROM_SETTINGS)
    assert result["signed"] is True
    assert result["icon"] == 404
    assert "auth_provider is not supported" in result["ssl"] and "auth_module" in result["ssl"]
