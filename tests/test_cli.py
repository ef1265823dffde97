"""The ``bokeh-flask serve`` command as users run it: flags, errors, signals."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.support.client import pull_texts
from tests.support.waiting import wait_until
from tests.support.servers import EXAMPLES, REPO_ROOT

APPS = REPO_ROOT / "tests" / "apps"
pytestmark = pytest.mark.slow


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bokeh_flask", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


def get(url: str) -> tuple[int, str, dict]:
    request = urllib.request.Request(url)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=20) as response:
            return response.status, response.read().decode("utf-8", "replace"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace"), dict(error.headers)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.mark.parametrize("args, message", [
    (["serve", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["serve", "--port", "notanumber"], "invalid int value"),
    (["serve", "does/not/exist.py"], "Path for Bokeh server application does not exist: does/not/exist.py"),
    (["serve", "--glob", "nothing*here.py"], "matched no files"),
    (["serve", "--keep-alive", "-5"], "use 0 to turn it off"),
    (["serve", "--backend", "memory", "--num-procs", "2"], "--backend memory keeps documents inside one process"),
    (["serve", "--backend", "nosql"], "invalid choice: 'nosql'"),
    (["serve", "--max-document-size", "0"], "max_document_bytes must be > 0"),
])
def test_bad_command_lines_are_one_line_errors(args, message):
    result = run_cli(*args)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_secret_prints_a_usable_key():
    result = run_cli("secret")
    key = result.stdout.strip()
    assert result.returncode == 0 and len(key) >= 43
    from bokeh.util.token import generate_session_id

    generate_session_id(secret_key=key.encode(), signed=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_cleanly_and_run_unload_hooks(serve, sig):
    server = serve(APPS / "hooks_app")
    server.wait_for_output(r"HOOK server-loaded")
    status, _, _ = get(server.app_url("hooks_app"))
    assert status == 200
    server.wait_for_output(r"HOOK session-created")
    server.proc.send_signal(sig)
    assert server.proc.wait(timeout=20) == 0
    output = server.stop()
    assert "HOOK server-unloaded" in output
    assert "HOOK session-destroyed" in output and "HOOK doc-destroyed" in output
    assert "Traceback" not in output


def test_args_reach_sys_argv_exactly(serve):
    server = serve(APPS / "argv_app.py", extra_args=["--args", "foo", "bar", "--baz"])
    text = pull_texts(server.app_url("argv_app"))["texts"]["argv"]
    assert json.loads(text.removeprefix("ARGV=")) == ["argv_app.py", "foo", "bar", "--baz"]


def test_glob_serves_every_match_and_the_index_lists_them(serve):
    server = serve(str(APPS / "globbed" / "glob_*.py"), extra_args=["--glob"])
    status, page, _ = get(server)
    assert status == 200
    assert "/glob_one" in page and "/glob_two" in page
    assert get(server + "/glob_two")[0] == 200


def test_prefix_moves_every_route(serve):
    server = serve(EXAMPLES / "sliders.py", extra_args=["--prefix", "foo"])
    status, page, _ = get(server + "/foo/sliders")
    assert status == 200
    script = re.search(r'src="(/foo/static/js/bokeh\.min\.js\?v=[0-9a-f]+)"', page)
    assert script, "BokehJS should load from under the prefix"
    status, _, headers = get(server + script.group(1))
    assert status == 200 and "max-age=31536000" in headers.get("Cache-Control", "")
    assert get(server + "/sliders")[0] == 404
    status, _, headers = get(server + "/foo/")
    assert status == 302 and headers["Location"].endswith("/foo/sliders")


def test_index_redirect_and_their_flags(serve):
    one = serve(EXAMPLES / "sliders.py", extra_args=["--disable-index-redirect", "--ico-path", "none"])
    status, page, _ = get(one)
    assert status == 200 and "/sliders" in page
    assert get(one + "/favicon.ico")[0] == 404
    off = serve(EXAMPLES / "sliders.py", extra_args=["--disable-index"])
    assert get(off)[0] == 404
    status, body, headers = get(off + "/favicon.ico")
    assert status == 200 and headers["Content-Type"] == "image/x-icon"


def test_no_files_serves_an_empty_app_at_the_root(serve):
    server = serve()
    status, page, _ = get(server)
    assert status == 200 and "Bokeh Application" in page
    meta = json.loads(get(server + "/metadata")[1])
    assert meta == {"url": "", "data": {}}


def test_an_app_that_raises_is_logged_and_others_keep_working(serve):
    server = serve(APPS / "raises_app.py", EXAMPLES / "sliders.py")
    status, _, _ = get(server.app_url("raises_app"))
    output = server.wait_for_output(r"this app is broken on purpose").string
    assert re.search(r"raises_app\.py.*line 6|line 6.*raises_app\.py", output, re.S), output[-2000:]
    assert get(server.app_url("sliders"))[0] == 200


def test_notebook_app(serve):
    server = serve(APPS / "notebook_app.ipynb")
    assert pull_texts(server.app_url("notebook_app"))["texts"] == {"nb": "from a notebook"}


def test_logging_flags(serve):
    server = serve(APPS / "argv_app.py", extra_args=[
        "--log-level", "debug", "--log-format", "LOGGED %(levelname)s %(message)s",
        "--stats-log-frequency", "100", "--mem-log-frequency", "100"])
    pull_texts(server.app_url("argv_app"))
    server.wait_for_output(r"LOGGED DEBUG \[pid \d+\] \d+ clients connected")
    server.wait_for_output(r"LOGGED DEBUG \[pid \d+\]   /argv_app has \d+ sessions with \d+ unused")
    server.wait_for_output(r"LOGGED INFO \[pid \d+\] Memory usage: [\d.]+ MB \(RSS\)")
    assert re.search(r"LOGGED INFO Bokeh app running at: http://127\.0\.0\.1:\d+/argv_app", server.output())


def test_log_file(tmp_path):
    log_file = tmp_path / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "bokeh_flask", "serve", str(APPS / "argv_app.py"), "--port", "0",
                             "--address", "127.0.0.1", "--log-file", str(log_file)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        running = wait_until(lambda: log_file.exists() and re.search(
            r"Bokeh app running at: (http://127\.0\.0\.1:\d+/argv_app)", log_file.read_text()), timeout=60)
        pull_texts(running.group(1))
        assert wait_until(lambda: "GET /argv_app/ws" in log_file.read_text(), timeout=20)
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "Bokeh app running at" not in output  # everything went to the file


@pytest.mark.parametrize("procs", ["1", "2"])
def test_show_opens_every_app_in_a_browser(serve, tmp_path, monkeypatch, procs):
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "fake-browser"
    browser.write_text(f"#!/bin/sh\necho \"$1\" >> {opened}\n")
    browser.chmod(0o755)
    monkeypatch.setenv("BROWSER", f"{browser} %s")
    serve(APPS / "argv_app.py", APPS / "notebook_app.ipynb", extra_args=["--show", "--num-procs", procs])

    def both_opened() -> list[str] | None:
        urls = sorted(opened.read_text().split()) if opened.exists() else []
        return urls if len(urls) == 2 else None

    urls = wait_until(both_opened, timeout=30)
    assert [re.sub(r":\d+", ":PORT", u) for u in urls] == ["http://127.0.0.1:PORT/argv_app",
                                                           "http://127.0.0.1:PORT/notebook_app"]


@pytest.mark.parametrize("flags, headers, cookies", [
    (["--include-headers", "X-Keep"], {"X-Keep"}, {"a", "b"}),
    (["--exclude-cookies", "b"], {"X-Keep", "X-Drop"}, {"a"}),
])
def test_what_the_token_carries(serve, flags, headers, cookies):
    from bokeh.util.token import get_token_payload

    server = serve(APPS / "argv_app.py", extra_args=flags)
    request = urllib.request.Request(server.app_url("argv_app"),
                                     headers={"X-Keep": "1", "X-Drop": "2", "Cookie": "a=1; b=2"})
    with urllib.request.urlopen(request, timeout=20) as response:
        payload = get_token_payload(re.search(r'"token":"([^"]+)"', response.read().decode()).group(1))
    assert headers <= set(payload["headers"]) and not ({"X-Keep", "X-Drop"} - headers) & set(payload["headers"])
    assert set(payload["cookies"]) == cookies


@pytest.mark.parametrize("flags, expected", [
    ([], {}),
    (["--publishing"], {"publishing": True}),
    (["-m"], {"publishing": True, "multi_user": True}),
    (["--backend", "redis", "--redis-port", "7100", "--no-start-redis"],
     {"publishing": True, "backend": "redis", "redis_port": 7100, "start_redis": False}),
    (["--data-directory", "d", "--close-registration", "--max-document-size", "1000"],
     {"publishing": True, "data_directory": "d", "open_registration": False, "max_document_bytes": 1000}),
])
def test_publishing_flags_become_settings_and_any_turns_it_on(flags, expected):
    from bokeh_flask.runtime.cli import settings_from_options, build_parser

    settings = settings_from_options(build_parser().parse_args(["serve", *flags]))
    names = {"publishing", "backend", "data_directory", "redis_url", "redis_port", "start_redis", "multi_user",
             "open_registration", "max_document_bytes"}
    assert {k: v for k, v in settings.items() if k in names} == expected
