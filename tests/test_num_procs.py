"""``bokeh-flask serve --num-procs N``: gunicorn gevent workers serving the same apps."""
from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import os
import re
import signal
import threading
import time
import urllib.request

import pytest
import websocket
from bokeh.util.token import get_token_payload

from tests.support.bokeh_ws import BokehWS, ConnectionDropped, models_by_name
from tests.support.servers import REPO_ROOT, gunicorn_executable, gunicorn_private_args
from tests.support.waiting import wait_until

APPS = REPO_ROOT / "tests" / "apps"
pytestmark = pytest.mark.slow


def page_token(server, query: str, cookie: str = "", app: str = "request_app") -> str:
    """Load ``app``'s page with ``query`` and a cookie; the session token in it."""
    request = urllib.request.Request(f"{server.browser_url}/{app}?{query}", headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=20) as response:
        return re.search(r'"token":"([^"]+)"', response.read().decode()).group(1)


def served_text(ws: BokehWS) -> str:
    """The request_app text of the session behind ``ws`` (a pull)."""
    return models_by_name(ws.pull().content["doc"])["request"]["attributes"]["text"]


def sessions_on_both_workers(server) -> dict[int, tuple[BokehWS, str, int]]:
    """An open request_app session in each of two workers: ``{pid: (websocket, token, n)}``."""
    server.wait_for_output(r"Worker \d+ ready[\s\S]*Worker \d+ ready", timeout=30)
    held: dict[int, tuple[BokehWS, str, int]] = {}

    def open_session(n: int) -> tuple[BokehWS, str, int]:
        token = page_token(server, f"n={n}", f"c=k{n}")
        ws = BokehWS.connect(server, "request_app", token=token)
        assert ws.recv_message().msgtype == "ACK"
        return ws, token, n

    with concurrent.futures.ThreadPoolExecutor(6) as pool:  # connections at once spread over the workers
        for burst in range(5):
            for ws, token, n in pool.map(open_session, range(6 * burst, 6 * burst + 6)):
                pid = int(served_text(ws).rsplit("=", 1)[1])
                if pid in held:
                    ws.close()
                else:
                    held[pid] = (ws, token, n)
            if len(held) == 2:
                return held
    raise AssertionError("gunicorn never handed a connection to the second worker")


def assert_sibling_kept_and_page_recovers(server, held: dict[int, tuple[BokehWS, str, int]], gone: int) -> None:
    """The other worker's session still answers; the gone worker's page gets its session back."""
    (other,) = set(held) - {gone}
    other_ws, _, other_n = held[other]
    assert served_text(other_ws) == f"n={other_n} c=k{other_n} pid={other}"
    other_ws.close()
    _, token, n = held[gone]
    # the page reconnects with the same token; whichever worker answers rebuilds the session
    with BokehWS.connect(server, "request_app", token=token) as again:
        assert again.recv_message().msgtype == "ACK"
        text = served_text(again)
    assert re.fullmatch(rf"n={n} c=k{n} pid=\d+", text) and int(text.rsplit("=", 1)[1]) != gone


def test_sessions_work_across_workers_and_sigterm_stops_them_all(serve):
    server = serve(APPS / "request_app.py", APPS / "hooks_app", extra_args=["--num-procs", "2"])
    # on_server_loaded runs in every worker (both lines may already be there: wait for the count)
    wait_until(lambda: server.output().count("HOOK server-loaded") == 2, 30)
    for n in range(8):
        token = page_token(server, f"n={n}", f"c=k{n}")
        # a new TCP connection: gunicorn may hand it to the other worker, which rebuilds the session
        with BokehWS.connect(server, "request_app", token=token) as ws:
            assert ws.recv_message().msgtype == "ACK"
            text = served_text(ws)
        assert re.fullmatch(rf"n={n} c=k{n} pid=\d+", text), text
    # websockets open at SIGTERM: pages that have loaded, and one client that never sent anything
    loaded = [BokehWS.connect(server, "hooks_app") for _ in range(5)]
    for ws in loaded:
        assert ws.recv_message().msgtype == "ACK"
        ws.pull()
    silent = BokehWS.connect(server, "hooks_app")
    assert silent.recv_message().msgtype == "ACK"
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    for ws in [*loaded, silent]:
        assert ws.wait_closed(timeout=10).code == 1001  # BokehJS reconnects on 1001
    assert server.proc.wait(timeout=20) == 0
    assert time.monotonic() - started < 10
    output = server.stop()
    assert output.count("HOOK server-unloaded") == 2
    for ws in [*loaded, silent]:
        assert output.count(f"HOOK session-destroyed {ws.session_id}") == 1
        assert output.count(f"HOOK doc-destroyed {ws.session_id}") == 1
    assert "Traceback" not in output


def test_a_recycled_worker_hands_its_pages_over_and_the_other_keeps_its_own(serve):
    server = serve(APPS / "request_app.py", extra_args=["--num-procs", "2"],
                   env={"GUNICORN_CMD_ARGS": "--max-requests 100"})
    held = sessions_on_both_workers(server)
    # requests on one keep-alive connection all reach one worker: it reaches --max-requests first
    mark = server.mark()
    keep_alive = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    recycled = None
    for _ in range(150):
        keep_alive.request("GET", "/healthz")
        response = keep_alive.getresponse()
        response.read()
        if response.getheader("Connection", "").lower() == "close":
            found = server.wait_for_output(r"\[(\d+)\] \[INFO\] Autorestarting worker", since=mark)
            recycled = int(found.group(1))
            break
    keep_alive.close()
    assert recycled in held, f"no worker recycled after 150 requests:\n{server.output()[mark:]}"
    ws = held[recycled][0]
    assert ws.wait_closed(timeout=10).code == 1001
    server.wait_for_output(rf"Worker exiting \(pid: {recycled}\)", since=mark)
    assert_sibling_kept_and_page_recovers(server, held, gone=recycled)
    assert server.proc.poll() is None
    assert "Traceback" not in server.output()


def test_a_killed_worker_is_replaced_its_pages_reconnect_and_the_other_keeps_its_own(serve):
    server = serve(APPS / "request_app.py", extra_args=["--num-procs", "2"])
    held = sessions_on_both_workers(server)
    victim = min(held)
    ws = held[victim][0]
    mark = server.mark()
    os.kill(victim, signal.SIGKILL)  # the worker holding the session dies without cleaning up
    server.wait_for_output(r"Booting worker with pid", since=mark, timeout=30)
    with pytest.raises(ConnectionDropped):  # no close frame from a killed process: the connection just ends
        ws.wait_closed(timeout=10)
    assert_sibling_kept_and_page_recovers(server, held, gone=victim)


def test_each_page_view_builds_its_document_once_with_four_workers(serve):
    server = serve(APPS / "request_app.py", extra_args=["--num-procs", "4"])
    views = 12
    for n in range(views):
        with BokehWS.connect(server, "request_app", token=page_token(server, f"n={n}")) as ws:
            assert ws.recv_message().msgtype == "ACK"
            text = served_text(ws)
        assert text.startswith(f"n={n} ")
        server.wait_for_output(rf"BUILT n={n} pid=\d+")
    built = re.findall(r"BUILT n=(\d+)", server.output())
    assert sorted(map(int, built)) == list(range(views))  # one build per page view, none in the page request


def test_sigterm_while_a_worker_boots_still_stops_within_ten_seconds(serve):
    """A stop signal in the first ~100 ms of a worker's life used to be lost (gunicorn's
    master then waited out the graceful timeout and killed the worker)."""
    server = serve(APPS / "hooks_app", extra_args=["--num-procs", "2"])
    first = server.wait_for_output(r"Worker (\d+) ready", timeout=30)
    mark = server.mark()
    os.kill(int(first.group(1)), signal.SIGKILL)
    server.wait_for_output(r"Booting worker with pid", since=mark, timeout=30)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)  # the replacement is still starting up
    assert server.proc.wait(timeout=20) == 0
    assert time.monotonic() - started < 10
    output = server.stop()
    # every worker that ran on_server_loaded ran on_server_unloaded, except the killed one
    assert output.count("HOOK server-unloaded") == output.count("HOOK server-loaded") - 1


def _template_page(server, n: int) -> tuple[str, int]:
    """Load the template app's page (it builds the document); its token and the worker it names."""
    token = page_token(server, f"n={n}", f"c=k{n}", app="template_app")
    return token, get_token_payload(token)["bokeh_flask_worker"]


@contextlib.contextmanager
def _paused(pid: int, seconds: float = 0.3):
    """Freeze worker ``pid`` for a moment: a connection made meanwhile is accepted by another worker.

    (Left alone, the kernel hands sequential connections to the same worker almost every time.)
    """
    os.kill(pid, signal.SIGSTOP)
    timer = threading.Timer(seconds, os.kill, (pid, signal.SIGCONT))
    timer.start()
    try:
        yield
    finally:
        timer.join()


def _pulled_text(ws) -> str:
    assert ws.recv_message().msgtype == "ACK"
    models = models_by_name(ws.pull().content["doc"])
    # the worker's pid is for the server: the app does not see it in session_context.token_payload
    assert models["payload"]["attributes"]["text"] == "arguments cookies headers session_expiry"
    return models["request"]["attributes"]["text"]


def test_template_pages_build_once_and_their_websockets_are_relayed_with_four_workers(serve):
    server = serve(APPS / "template_app", extra_args=["--num-procs", "4", "--unused-session-lifetime", "2000",
                                                      "--check-unused-sessions", "300"])
    views = 12
    forced = 0
    for n in range(views):
        token, page_worker = _template_page(server, n)
        # every other websocket is made while the page's worker is frozen, so another worker takes it
        pause = _paused(page_worker) if n % 2 else contextlib.nullcontext()
        with pause:
            ws = BokehWS.connect(server, "template_app", token=token)
        with ws:
            text = _pulled_text(ws)
        assert text == f"n={n} c=k{n} pid={page_worker}"  # the page request's document, arguments and cookie
        if n % 2:
            forced += 1
            server.wait_for_output(rf"Relaying the websocket of session \S+ to worker {page_worker}\b")
    # once the websockets have closed, each worker drops the sessions it holds (--unused-session-lifetime)
    server.wait_for_output(r"(?s)(DESTROYED.*){%d}" % views, timeout=20)
    output = server.output()
    built = re.findall(r"BUILT n=(\d+) session=(\S+) pid=(\d+)", output)
    assert sorted(int(n) for n, _, _ in built) == list(range(views))  # one build per page view
    destroyed = re.findall(r"DESTROYED (\S+) pid=(\d+)", output)
    assert sorted(destroyed) == sorted((session, pid) for _, session, pid in built)  # each in its builder, once
    relayed = len(re.findall(r"Relaying the websocket of session", output))
    assert forced <= relayed <= views
    assert len(re.findall(r"WebSocket connection opened \(relayed from worker \d+\)", output)) == relayed
    assert "Traceback" not in output


def test_an_expired_token_reaches_its_live_session_through_the_relay(serve):
    """A page that has had its websocket reconnects with its expired token, through the relay (bokeh#14416);
    an expired token never opens a session's first websocket, relayed or not."""
    server = serve(APPS / "template_app", extra_args=["--num-procs", "2", "--session-token-expiration", "2"])
    token, page_worker = _template_page(server, 3)
    with _paused(page_worker):
        ws = BokehWS.connect(server, "template_app", token=token)
    with ws:  # the page's first websocket, while its token is fresh
        assert _pulled_text(ws) == f"n=3 c=k3 pid={page_worker}"
    unused, other_page_worker = _template_page(server, 4)
    time.sleep(3.0)  # both tokens have expired; both sessions live on in their pages' workers
    with _paused(page_worker):
        ws = BokehWS.connect(server, "template_app", token=token)
    with ws:
        assert _pulled_text(ws) == f"n=3 c=k3 pid={page_worker}"
    with _paused(other_page_worker), pytest.raises(websocket.WebSocketBadStatusException) as refused:
        BokehWS.connect(server, "template_app", token=unused)
    assert refused.value.status_code == 403
    assert len(re.findall(r"BUILT n=3 ", server.output())) == 1


def test_a_killed_page_worker_leaves_its_websocket_to_be_built_from_the_token(serve):
    server = serve(APPS / "template_app", extra_args=["--num-procs", "2"])
    token, victim = _template_page(server, 5)
    mark = server.mark()
    os.kill(victim, signal.SIGKILL)  # its socket file stays behind: connecting to it is refused
    server.wait_for_output(r"Booting worker with pid", since=mark, timeout=30)
    with BokehWS.connect(server, "template_app", token=token) as ws:
        text = _pulled_text(ws)
    assert re.fullmatch(r"n=5 c=k5 pid=\d+", text) and int(text.rsplit("=", 1)[1]) != victim
    server.wait_for_output(rf"Could not relay the websocket of session \S+ to worker {victim}", since=mark)


def test_a_stopping_page_worker_closes_its_relayed_websockets_with_1001(serve):
    server = serve(APPS / "template_app", extra_args=["--num-procs", "2"])
    token, page_worker = _template_page(server, 9)
    with _paused(page_worker):
        ws = BokehWS.connect(server, "template_app", token=token)
    with ws:
        assert _pulled_text(ws) == f"n=9 c=k9 pid={page_worker}"
        os.kill(page_worker, signal.SIGTERM)  # gunicorn replaces it; it closes its websockets on the way out
        assert ws.wait_closed(timeout=15).code == 1001  # passed through by the relaying worker
        ws.ws.sock.settimeout(5)
        try:
            assert ws.ws.sock.recv(1) == b""  # and then the relaying worker closed the connection
        except ConnectionResetError:
            pass


@pytest.mark.parametrize("worker_class", ["bokeh_flask.gunicorn_worker.GeventWorker", "gevent"])
def test_the_gunicorn_command_relays_too(serve, tmp_path, worker_class):
    """``gunicorn -k <worker class> -w 2 wsgi:app``: the workers share a relay directory, so a template page's
    websocket that lands in the other worker reaches the document its page built (built once), with bokeh-flask's
    worker class and with gunicorn's own gevent worker (which finds its sibling on its first request)."""
    gunicorn = gunicorn_executable()
    server = serve.command(
        [gunicorn, "-k", worker_class, "-w", "2", "-b", "127.0.0.1:0", *gunicorn_private_args(), "wsgi:app"],
        re.compile(r"Listening at: http://127\.0\.0\.1:(?P<port>\d+)"),
        env={"BOKEH_FLASK_APPS": str(APPS / "template_app"), "BOKEH_ALLOW_WS_ORIGIN": "*", "TMPDIR": str(tmp_path)},
    )
    server.wait_for_output(r"Booting worker with pid[\s\S]*Booting worker with pid", timeout=30)
    if worker_class != "gevent":
        server.wait_for_output(r"Worker \d+ ready[\s\S]*Worker \d+ ready", timeout=30)
    shared = tmp_path / f"bokeh-flask-relay-{os.getuid()}-{server.pid}"
    token, page_worker = _template_page(server, 6)
    assert shared.is_dir() and shared.stat().st_mode & 0o777 == 0o700
    with _paused(page_worker):  # the websocket lands in the other worker, which relays it
        ws = BokehWS.connect(server, "template_app", token=token)
    with ws:
        assert _pulled_text(ws) == f"n=6 c=k6 pid={page_worker}"
    assert len(re.findall(r"BUILT n=6 ", server.output())) == 1
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0
    assert not shared.exists()  # the last worker out removed it


def prometheus(server) -> dict[str, float]:
    """``/metrics`` as ``{'name{labels}': value}``."""
    with urllib.request.urlopen(f"{server.browser_url}/metrics", timeout=20) as response:
        lines = response.read().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line and line[0] != "#"}


def test_metrics_report_the_whole_server_whichever_worker_answers(serve):
    server = serve(APPS / "request_app.py", extra_args=["--num-procs", "2"])
    held = sessions_on_both_workers(server)
    created = 'bokeh_flask_sessions_created_total{app="/request_app"}'
    connections = 'bokeh_flask_connections{app="/request_app"}'

    def whole_server() -> dict[str, float] | None:
        """Six answers (from either worker) that agree on the whole server.

        Each worker leaves its numbers for the other every second."""
        answers = [prometheus(server) for _ in range(6)]
        agreed = all(a[created] == answers[0][created] and a[connections] == 2 for a in answers)
        return answers[0] if agreed else None

    try:
        metrics = wait_until(whole_server, timeout=15)
        assert metrics["bokeh_flask_processes"] == 2
        assert metrics[created] >= len(held)  # sessions both workers built, not one worker's
    finally:
        for ws, _, _ in held.values():
            ws.close()


def test_gunicorns_own_gevent_worker_builds_each_page_once(serve):
    """``gunicorn -k gevent -w 2 wsgi:app``: pages leave the document to the websocket's worker, as
    bokeh-flask's worker class does, so a page view builds one document wherever its websocket lands."""
    gunicorn = gunicorn_executable()
    server = serve.command(
        [gunicorn, "-k", "gevent", "-w", "2", "-b", "127.0.0.1:0", *gunicorn_private_args(), "wsgi:app"],
        re.compile(r"Listening at: http://127\.0\.0\.1:(?P<port>\d+)"),
        env={"BOKEH_FLASK_APPS": str(APPS / "request_app.py"), "BOKEH_ALLOW_WS_ORIGIN": "*"},
    )
    booted = server.wait_for_output(r"Booting worker with pid: (\d+)[\s\S]*Booting worker with pid: (\d+)", timeout=30)
    first, second = int(booted.group(1)), int(booted.group(2))

    def answered_by_the_other(worker: int) -> bool:
        """With ``worker`` frozen, the other answers at once once it has loaded the app."""
        with _paused(worker, seconds=0.5):
            started = time.monotonic()
            urllib.request.urlopen(f"{server.browser_url}/healthz", timeout=30).read()
            return time.monotonic() - started < 0.4

    for worker in (first, second):
        wait_until(lambda: answered_by_the_other(worker), 60)
    for n, (page_worker, ws_worker) in enumerate([(first, second), (second, first)]):
        with _paused(ws_worker, seconds=1.0):  # the page goes to page_worker
            token = page_token(server, f"n={n}", f"c=k{n}")
        with _paused(page_worker, seconds=0.3):  # and its websocket to the other one
            ws = BokehWS.connect(server, "request_app", token=token)
        with ws:
            assert served_text(ws) == f"n={n} c=k{n} pid={ws_worker}"
    built = re.findall(r"BUILT n=(\d+) ", server.output())
    assert sorted(built) == ["0", "1"]  # one document per page view, where its websocket landed
