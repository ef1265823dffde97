"""``bokeh-flask serve --num-procs N``: gunicorn gevent workers serving the same apps."""
from __future__ import annotations

import os
import re
import signal
import time
import urllib.request

import pytest

from tests.support.bokeh_ws import BokehWS, models_by_name
from tests.support.servers import REPO_ROOT

APPS = REPO_ROOT / "tests" / "apps"
pytestmark = pytest.mark.slow


def test_sessions_work_across_workers_and_sigterm_stops_them_all(serve):
    server = serve(APPS / "request_app.py", APPS / "hooks_app", extra_args=["--num-procs", "2"])
    for _ in range(2):  # on_server_loaded runs in every worker
        mark = server.mark()
        server.wait_for_output(r"HOOK server-loaded", since=mark)
    assert server.output().count("HOOK server-loaded") == 2
    for n in range(8):
        request = urllib.request.Request(f"{server.browser_url}/request_app?n={n}", headers={"Cookie": f"c=k{n}"})
        with urllib.request.urlopen(request, timeout=20) as response:
            token = re.search(r'"token":"([^"]+)"', response.read().decode()).group(1)
        # a new TCP connection: gunicorn may hand it to the other worker, which rebuilds the session
        with BokehWS.connect(server, "request_app", token=token) as ws:
            assert ws.recv_message().msgtype == "ACK"
            text = models_by_name(ws.pull().content["doc"])["request"]["attributes"]["text"]
        assert re.fullmatch(rf"n={n} c=k{n} pid=\d+", text), text
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0
    assert time.monotonic() - started < 10
    output = server.stop()
    assert output.count("HOOK server-unloaded") == 2
    assert "Traceback" not in output


def test_a_killed_worker_is_replaced_and_its_pages_reconnect(serve):
    server = serve(APPS / "request_app.py", extra_args=["--num-procs", "2"])
    request = urllib.request.Request(f"{server.browser_url}/request_app?n=7", headers={"Cookie": "c=kept"})
    with urllib.request.urlopen(request, timeout=20) as response:
        token = re.search(r'"token":"([^"]+)"', response.read().decode()).group(1)
    with BokehWS.connect(server, "request_app", token=token) as ws:
        assert ws.recv_message().msgtype == "ACK"
        text = models_by_name(ws.pull().content["doc"])["request"]["attributes"]["text"]
    victim = int(text.rsplit("=", 1)[1])
    mark = server.mark()
    os.kill(victim, signal.SIGKILL)  # the worker holding the session dies without cleaning up
    server.wait_for_output(r"Booting worker with pid", since=mark, timeout=30)
    # the page reconnects with the same token; whichever worker answers rebuilds the session
    with BokehWS.connect(server, "request_app", token=token) as ws:
        assert ws.recv_message().msgtype == "ACK"
        text = models_by_name(ws.pull().content["doc"])["request"]["attributes"]["text"]
    assert re.fullmatch(r"n=7 c=kept pid=\d+", text) and int(text.rsplit("=", 1)[1]) != victim


def test_each_page_view_builds_its_document_once_with_four_workers(serve):
    server = serve(APPS / "request_app.py", extra_args=["--num-procs", "4"])
    views = 12
    for n in range(views):
        with urllib.request.urlopen(f"{server.browser_url}/request_app?n={n}", timeout=20) as response:
            page = response.read().decode()
        token = re.search(r'"token":"([^"]+)"', page).group(1)
        with BokehWS.connect(server, "request_app", token=token) as ws:
            assert ws.recv_message().msgtype == "ACK"
            text = models_by_name(ws.pull().content["doc"])["request"]["attributes"]["text"]
        assert text.startswith(f"n={n} ")
        server.wait_for_output(rf"BUILT n={n} pid=\d+")
    built = re.findall(r"BUILT n=(\d+)", server.output())
    assert sorted(map(int, built)) == list(range(views))  # one build per page view, none in the page request
