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
    from bokeh_flask.core.errors import ConfigError

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
    from bokeh_flask.core.errors import ConfigError

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
    # bokeh's AuthProvider objects are taken (tests/test_tornado_handlers.py); one that is not one is refused
    assert "auth_provider object" in result["ssl"] and "get_user" in result["ssl"]


NUM_PROCS_SCRIPT = """
    import logging, os, sys
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.application.handlers.lifecycle import LifecycleHandler
    from bokeh.models import Div
    from bokeh_flask import Server

    logging.basicConfig(level=logging.INFO)

    def modify(doc):
        args = doc.session_context.request.arguments
        doc.add_root(Div(text=f"n={args['n'][0].decode()} pid={os.getpid()}", name="who"))

    lifecycle = LifecycleHandler()
    lifecycle._on_server_loaded = lambda ctx: print(f"LOADED {os.getpid()}", flush=True)
    lifecycle._on_server_unloaded = lambda ctx: print(f"UNLOADED {os.getpid()}", flush=True)
    server = Server({"/who": Application(FunctionHandler(modify), lifecycle)}, num_procs=2,
                    port=0, address="127.0.0.1")
    server.start()
    server.io_loop.start()  # runs the workers until SIGTERM
    print(f"AFTER {os.getpid()} port={server.port}", flush=True)  # only the master gets here
"""


def test_server_with_num_procs_runs_gunicorn_workers(serve):
    import re
    import signal
    import sys
    import textwrap
    import urllib.request

    from tests.support.bokeh_ws import BokehWS, models_by_name

    server = serve.command([sys.executable, "-c", textwrap.dedent(NUM_PROCS_SCRIPT)],
                           re.compile(r"gunicorn gevent workers on port (?P<port>\d+)"))
    server.wait_for_output(r"LOADED \d+[\s\S]*LOADED \d+")  # on_server_loaded in each worker
    pids = set()
    for n in range(6):
        with urllib.request.urlopen(f"{server.browser_url}/who?n={n}", timeout=20) as response:
            token = re.search(r'"token":"([^"]+)"', response.read().decode()).group(1)
        with BokehWS.connect(server, "who", token=token) as ws:
            assert ws.recv_message().msgtype == "ACK"
            text = models_by_name(ws.pull().content["doc"])["who"]["attributes"]["text"]
        assert re.fullmatch(rf"n={n} pid=(\d+)", text), text
        pids.add(int(text.rsplit("=", 1)[1]))
    assert server.pid not in pids  # sessions live in the workers, not in the script's process
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0
    output = server.stop()
    workers = set(map(int, re.findall(r"LOADED (\d+)", output)))
    assert len(workers) == 2 and set(map(int, re.findall(r"UNLOADED (\d+)", output))) == workers
    assert re.findall(r"AFTER (\d+) port=(\d+)", output) == [(str(server.pid), str(server.port))]


NUM_PROCS_ERRORS = """
    import json
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh_flask import Server
    from bokeh_flask.core.errors import ConfigError

    def modify(doc):
        pass

    used = Application(FunctionHandler(modify))
    used.create_document()
    errors = {}
    for name, kwargs in {"io_loop": dict(io_loop=object()), "unix_and_port": dict(unix_socket="/tmp/x.sock", port=5999),
                         "used_app": dict(), "negative": dict(num_procs=-1)}.items():
        kwargs.setdefault("num_procs", 2)
        try:
            Server({"/": used if name == "used_app" else modify}, **kwargs)
            errors[name] = None
        except ConfigError as error:
            errors[name] = str(error)
    print(json.dumps(errors))
"""


def test_server_with_num_procs_refuses_what_cannot_work():
    errors = run_client(NUM_PROCS_ERRORS)
    assert "do not pass io_loop" in errors["io_loop"] and "num_procs" in errors["io_loop"]
    assert "--port is not supported with a unix socket" in errors["unix_and_port"]
    assert "already made a document" in errors["used_app"]
    assert "num_procs must be >= 0" in errors["negative"]


HTTP_SERVER_KWARGS = """
    from gevent import monkey; monkey.patch_all()
    import json, re, urllib.error, urllib.request
    from bokeh.models import Div
    from bokeh_flask import Server
    from bokeh_flask.core.errors import ConfigError

    app = {"/app": lambda doc: doc.add_root(Div(text="x"))}
    result = {}
    # the seed's own example: large buffers (every request used to be reset)
    server = Server(app, port=0, address="127.0.0.1", http_server_kwargs={"max_buffer_size": 500 * 1024 * 1024,
                                                                          "xheaders": True,
                                                                          "max_header_size": 2048},
                    absolute_url="https://cdn.example.com/")
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    page = urllib.request.urlopen(base + "/app")
    result["page"] = page.status
    result["absolute_url"] = 'src="https://cdn.example.com/static/js/bokeh.min.js' in page.read().decode()
    result["xheaders"] = server.settings.use_xheaders
    try:
        urllib.request.urlopen(urllib.request.Request(base + "/app", headers={"X-Big": "b" * 4000}))
    except urllib.error.HTTPError as error:
        result["big_headers"] = error.code
    server.stop()
    for kwargs in ({"idle_connection_timeout": 5}, {"no_keep_alive": True}, {"ssl_options": "nonsense"}):
        for procs in (1, 2):
            try:
                Server(app, port=0, num_procs=procs, http_server_kwargs=kwargs)
                result.setdefault("accepted", []).append(list(kwargs))
            except ConfigError as error:
                result.setdefault("refused", []).append(str(error).split(":")[0])
    print(json.dumps(result))
"""


def test_http_server_kwargs_map_to_equivalents_or_are_refused_by_name():
    result = run_client(HTTP_SERVER_KWARGS)
    assert result == {
        "page": 200, "absolute_url": True, "xheaders": True, "big_headers": 431,
        "refused": ["http_server_kwargs['idle_connection_timeout'] has no equivalent in bokeh-flask's servers (gevent, "
                    "gunicorn)"] * 2 + ["http_server_kwargs['no_keep_alive'] has no equivalent in bokeh-flask's "
                                        "servers (gevent, gunicorn)"] * 2
                   + ["http_server_kwargs['ssl_options'] must be an ssl.SSLContext or a dict with 'certfile' "
                      "(and 'keyfile')"] * 2,
    }
