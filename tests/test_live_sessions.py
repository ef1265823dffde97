"""Live server: session cleanup, and callbacks that wait without freezing other sessions."""
from __future__ import annotations

import json
import re
import urllib.request

import pytest

from tests.support.bokeh_ws import BokehWS, make_token, models_by_name, new_session_id
from tests.support.servers import REPO_ROOT

APPS = REPO_ROOT / "tests" / "apps"
pytestmark = pytest.mark.slow


def health(server) -> dict:
    with urllib.request.urlopen(f"{server}/healthz", timeout=10) as response:
        return json.load(response)


def open_session(server, app: str, **arguments: str) -> tuple[BokehWS, str]:
    session_id = new_session_id()
    payload = {"arguments": {k: [v.encode()] for k, v in arguments.items()}, "headers": {}, "cookies": {}}
    ws = BokehWS.connect(server, app, token=make_token(session_id, extra_payload=payload))
    assert ws.recv_message().msgtype == "ACK"
    return ws, session_id


@pytest.fixture(scope="module")
def hooks_server(serve_module):
    server = serve_module(APPS / "hooks_app", extra_args=["--check-unused-sessions", "100",
                                                          "--unused-session-lifetime", "300"])
    server.wait_for_output("HOOK server-loaded")
    return server


def test_closed_session_is_destroyed_and_open_one_is_kept(hooks_server):
    server = hooks_server
    kept, kept_id = open_session(server, "hooks_app")
    gone, gone_id = open_session(server, "hooks_app")
    gone.pull()
    gone.close()
    server.wait_for_output(re.escape(f"HOOK session-destroyed {gone_id}"), timeout=15)
    server.wait_for_output(re.escape(f"HOOK doc-destroyed {gone_id}"), timeout=15)
    # a cleanup pass has run since: the open session must still be alive and working
    assert f"session-destroyed {kept_id}" not in server.output()
    assert "Slider" in json.dumps(kept.pull().content)
    kept.close()


def test_session_count_returns_to_zero_after_200_sessions(hooks_server):
    server = hooks_server
    ids = []
    for _ in range(200):
        ws, session_id = open_session(server, "hooks_app")
        ws.close()
        ids.append(session_id)
    mark = server.mark()
    for session_id in ids:  # every one of them is destroyed, hooks included
        server.wait_for_output(re.escape(f"HOOK session-destroyed {session_id}"), timeout=30)
    server.wait_for_output(r"HOOK session-destroyed", timeout=5, since=mark - 1 if mark else 0)
    assert health(server)["sessions"] == {"/hooks_app": 0}
    assert health(server)["connections"] == 0


@pytest.fixture(scope="module")
def concurrency_server(serve_module):
    return serve_module(APPS / "concurrency_app.py")


@pytest.mark.parametrize("mode", ["blocking", "async"])
def test_a_waiting_callback_does_not_freeze_other_sessions(concurrency_server, mode):
    server = concurrency_server
    mark = server.mark()
    waiting, _ = open_session(server, "concurrency_app", mode=mode, label=f"{mode}-A")
    server.wait_for_output(re.escape(f"CALLBACK start {mode}-A"), since=mark)
    other, _ = open_session(server, "concurrency_app", label="B")
    reply = other.pull()
    assert reply.msgtype == "PULL-DOC-REPLY"
    # B was served while A's callback was still waiting
    assert f"CALLBACK end {mode}-A" not in server.output()[mark:]
    patch, _ = waiting.recv_until(lambda m: m.msgtype == "PATCH-DOC", timeout=15)
    assert patch.content["events"][0]["new"] == f"same-doc {mode}-A"
    for ws in (waiting, other):
        ws.close()


def test_curdoc_stays_with_its_session_while_callbacks_interleave(concurrency_server):
    server = concurrency_server
    mark = server.mark()
    sessions = [open_session(server, "concurrency_app", mode="blocking", label=f"C{i}")[0] for i in range(3)]
    for i in range(3):
        server.wait_for_output(re.escape(f"CALLBACK start C{i}"), since=mark)
    texts = []
    for ws in sessions:
        patch, _ = ws.recv_until(lambda m: m.msgtype == "PATCH-DOC", timeout=15)
        texts.append(patch.content["events"][0]["new"])
        ws.close()
    assert texts == ["same-doc C0", "same-doc C1", "same-doc C2"]


def test_metrics_count_what_happened(hooks_server):
    server = hooks_server

    def metric(text: str, name: str) -> float:
        return float(re.search(rf'^bokeh_flask_{name}{{app="/hooks_app"}} (\S+)$', text, re.M).group(1))

    def scrape() -> str:
        with urllib.request.urlopen(f"{server}/metrics", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            return response.read().decode()

    before = scrape()
    ws, _ = open_session(server, "hooks_app")
    slider_id = models_by_name(ws.pull().content["doc"])["slider"]["id"]
    reply = ws.request("PATCH-DOC", {"events": [{"kind": "ModelChanged", "model": {"id": slider_id},
                                                 "attr": "value", "new": 3}]})
    assert reply.msgtype == "OK"
    during = scrape()
    assert metric(during, "connections") == metric(before, "connections") + 1
    assert metric(during, "sessions_created_total") == metric(before, "sessions_created_total") + 1
    assert metric(during, "messages_in_total") == metric(before, "messages_in_total") + 2
    assert metric(during, "messages_out_total") >= metric(before, "messages_out_total") + 4  # ACK, reply, patch, OK
    assert metric(during, "patches_handled_total") == metric(before, "patches_handled_total") + 1
    assert metric(during, "patch_seconds_total") > metric(before, "patch_seconds_total")
    ws.close()
