"""The three ways to run: ``bokeh-flask serve``, ``gunicorn -k gevent wsgi:app`` and ``flask run``.

Each is checked with a live websocket session made by ``bokeh.client`` in
another process: the document is pulled, a slider change runs the app's
Python callback, and the lifecycle hooks are observed in the server output.
"""
from __future__ import annotations

import concurrent.futures
import re
import sys
import threading
import urllib.request

import pytest

from tests.support.client import pull_texts, run_client
from tests.support.servers import REPO_ROOT, gunicorn_executable, gunicorn_private_args

pytestmark = pytest.mark.slow
HOOKS_APP = REPO_ROOT / "tests" / "apps" / "hooks_app"

CHANGE_SLIDER = """
    import json, sys
    from bokeh.client import pull_session
    with pull_session(url=sys.argv[1]) as session:
        slider, out = session.document.get_model_by_name("slider"), session.document.get_model_by_name("out")
        before = out.text
        slider.value = 7
        session.force_roundtrip()  # the server has applied the patch when this returns
        print(json.dumps({"before": before, "id": session.id}))
"""


def check_live_session(server, url: str) -> None:
    """Pull, change the slider, and see the Python callback's result in the server session."""
    changed = run_client(CHANGE_SLIDER, url)
    assert changed["before"] == "v=1"
    again = pull_texts(url, session_id=changed["id"])
    assert again == {"session_id": changed["id"], "texts": {"out": "v=7"}}
    server.wait_for_output(re.escape(f"HOOK session-created {changed['id']}"))


def test_bokeh_flask_serve(serve):
    server = serve(HOOKS_APP)
    server.wait_for_output("HOOK server-loaded")
    check_live_session(server, server.app_url("hooks_app"))


def test_gunicorn_gevent_worker(serve):
    gunicorn = gunicorn_executable()
    server = serve.command(
        [gunicorn, "-k", "gevent", "-w", "1", "-b", "127.0.0.1:0", "--graceful-timeout", "5",
         *gunicorn_private_args(), "wsgi:app"],
        re.compile(r"Listening at: http://127\.0\.0\.1:(?P<port>\d+)"),
        env={"BOKEH_FLASK_APPS": str(HOOKS_APP)},
    )
    check_live_session(server, f"http://localhost:{server.port}/hooks_app")


def test_flask_run_development_server(serve):
    server = serve.command(
        [sys.executable, "-m", "flask", "--app", "wsgi", "run", "--port", "0"],
        re.compile(r"Running on http://127\.0\.0\.1:(?P<port>\d+)"),
        env={"BOKEH_FLASK_APPS": str(HOOKS_APP)},
    )
    check_live_session(server, f"http://localhost:{server.port}/hooks_app")


def test_flask_run_builds_a_session_once_for_concurrent_first_visits(serve):
    """Under ``flask run`` requests are OS threads: 20 first visits at once to one session id build it once."""
    server = serve.command(
        [sys.executable, "-m", "flask", "--app", "wsgi", "run", "--port", "0"],
        re.compile(r"Running on http://127\.0\.0\.1:(?P<port>\d+)"),
        env={"BOKEH_FLASK_APPS": str(HOOKS_APP)},
    )
    url = f"http://127.0.0.1:{server.port}/hooks_app?bokeh-session-id=shared-by-twenty"
    barrier = threading.Barrier(20)

    def visit(_: int) -> int:
        barrier.wait(timeout=30)
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        assert list(pool.map(visit, range(20))) == [200] * 20
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=30) as response:
        metrics = response.read().decode()
    assert 'bokeh_flask_sessions_created_total{app="/hooks_app"} 1' in metrics
    assert len(re.findall(r"HOOK session-created shared-by-twenty", server.output())) == 1
    assert len(re.findall(r"HOOK server-loaded", server.output())) == 1


def test_gunicorn_with_bokeh_flasks_worker_class_and_two_workers(serve):
    """``-k bokeh_flask.gunicorn_worker.GeventWorker``: what ``--num-procs`` runs, from the gunicorn command."""
    import signal
    import urllib.request

    from tests.support.bokeh_ws import BokehWS, models_by_name

    gunicorn = gunicorn_executable()
    request_app = REPO_ROOT / "tests" / "apps" / "request_app.py"
    server = serve.command(
        [gunicorn, "-k", "bokeh_flask.gunicorn_worker.GeventWorker", "-w", "2", "-b", "127.0.0.1:0",
         *gunicorn_private_args(), "wsgi:app"],
        re.compile(r"Listening at: http://127\.0\.0\.1:(?P<port>\d+)"),
        env={"BOKEH_FLASK_APPS": f"{request_app}:{HOOKS_APP}", "BOKEH_ALLOW_WS_ORIGIN": "*"},
    )
    server.wait_for_output(r"HOOK server-loaded[\s\S]*HOOK server-loaded")  # at boot, in each worker
    for n in range(6):  # pages issue tokens; each document is built once, where its websocket lands
        with urllib.request.urlopen(f"{server}/request_app?n={n}", timeout=20) as response:
            token = re.search(r'"token":"([^"]+)"', response.read().decode()).group(1)
        with BokehWS.connect(server, "request_app", token=token) as ws:
            assert ws.recv_message().msgtype == "ACK"
            assert models_by_name(ws.pull().content["doc"])["request"]["attributes"]["text"].startswith(f"n={n} ")
        server.wait_for_output(rf"BUILT n={n} pid=\d+")
    assert sorted(map(int, re.findall(r"BUILT n=(\d+)", server.output()))) == list(range(6))
    held = BokehWS.connect(server, "hooks_app")
    assert held.recv_message().msgtype == "ACK"
    held.pull()
    server.proc.send_signal(signal.SIGTERM)
    assert held.wait_closed(timeout=10).code == 1001
    assert server.proc.wait(timeout=20) == 0
    output = server.stop()
    assert output.count("HOOK server-unloaded") == 2
    assert output.count(f"HOOK session-destroyed {held.session_id}") == 1


@pytest.mark.parametrize("runner", ["flask run", "gunicorn -w 2"])
def test_publishing_under_flask_run_and_plain_gunicorn(serve, tmp_path, runner):
    """``wsgi.py`` with ``BOKEH_FLASK_PUBLISHING``: OS threads under ``flask run``; two ``-k gevent``
    workers sharing the file store under gunicorn (whichever worker answers, the document is there)."""
    from bokeh.document import Document
    from bokeh.models import Div

    from bokeh_flask.client import Session

    env = {"BOKEH_FLASK_APPS": str(HOOKS_APP), "BOKEH_FLASK_PUBLISHING": "yes",
           "BOKEH_FLASK_DATA_DIRECTORY": str(tmp_path / "data")}
    if runner == "flask run":
        server = serve.command([sys.executable, "-m", "flask", "--app", "wsgi", "run", "--port", "0"],
                               re.compile(r"Running on http://127\.0\.0\.1:(?P<port>\d+)"), env=env)
    else:
        server = serve.command([gunicorn_executable(), "-k", "gevent", "-w", "2", "-b", "127.0.0.1:0",
                                *gunicorn_private_args(), "wsgi:app"],
                               re.compile(r"Listening at: http://127\.0\.0\.1:(?P<port>\d+)"), env=env)
    root = f"http://localhost:{server.port}/"
    owner = Session(root, keys_dir=tmp_path / "keys")
    doc = Document()
    doc.add_root(Div(text="one", name="note"))
    owner.use_doc("runner").push(doc)
    doc.get_model_by_name("note").text = "two"
    owner.push(doc)
    owner.publish()
    for _ in range(6):  # new sessions, new connections: under gunicorn both workers answer some
        pulled = Session(root, keys_dir=tmp_path / "keys").use_doc("runner").pull()
        assert pulled.get_model_by_name("note").text == "two"
    with urllib.request.urlopen(root + "bokeh/doc/runner?public=true", timeout=20) as page:
        assert page.status == 200
    owner.close()
    if runner == "flask run":  # one process: a session id reaches the same session again
        check_live_session(server, f"http://localhost:{server.port}/hooks_app")  # the apps run on beside it
