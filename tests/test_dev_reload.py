"""``--dev``: editing an app restarts the server, and the new code is served."""
from __future__ import annotations

import os
import re
import sys
import time

import pytest

from tests.support.client import pull_texts

pytestmark = pytest.mark.slow
APP_SOURCE = "from bokeh.io import curdoc\nfrom bokeh.models import Div\ncurdoc().add_root(Div(text={!r}, name='v'))\n"


def test_editing_the_app_restarts_the_server(serve, tmp_path):
    app = tmp_path / "live.py"
    app.write_text(APP_SOURCE.format("version 1"))
    server = serve(app, extra_args=["--dev"])
    assert pull_texts(server.app_url("live"))["texts"] == {"v": "version 1"}
    server.wait_for_output(r"Development mode: watching 1 files")
    mark = server.mark()
    app.write_text(APP_SOURCE.format("version 2"))
    server.wait_for_output(r"Reloading: .*live\.py changed", since=mark, timeout=20)
    running = server.wait_for_output(r"Bokeh app running at: http://127\.0\.0\.1:(\d+)/live", since=mark, timeout=60)
    assert pull_texts(f"http://localhost:{running.group(1)}/live")["texts"] == {"v": "version 2"}
    assert server.proc.poll() is None  # the same parent process, with a new child serving
    child = int(server.wait_for_output(r"Starting Bokeh server with process id: (\d+)", since=mark).group(1))
    server.proc.terminate()  # SIGTERM to the parent reaches the child, which stops cleanly
    assert server.proc.wait(timeout=20) == 0
    assert _gone_within(child, 10.0)
    server.wait_for_output(r"Bokeh server stopped", since=mark)


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


HELPER_APP = """\
import sys
from bokeh.io import curdoc
from bokeh.models import Div
from helper import VALUE
curdoc().add_root(Div(text=f"{VALUE} dev_mode={sys.flags.dev_mode}", name="v"))
"""


def test_editing_a_module_the_app_imports_restarts_with_the_same_interpreter_flags(serve, tmp_path):
    """A helper module is watched because the app imported it; ``-X dev`` survives the restart."""
    from tests.support.servers import RUNNING_AT

    (tmp_path / "helper.py").write_text('VALUE = "helper 1"\n')
    app = tmp_path / "uses_helper.py"
    app.write_text(HELPER_APP)
    cmd = [sys.executable, "-X", "dev", "-m", "bokeh_flask", "serve", str(app), "--port", "0",
           "--address", "127.0.0.1", "--dev"]
    server = serve.command(cmd, RUNNING_AT)
    assert pull_texts(server.app_url("uses_helper"))["texts"] == {"v": "helper 1 dev_mode=True"}
    mark = server.mark()
    (tmp_path / "helper.py").write_text('VALUE = "helper 2"\n')
    server.wait_for_output(r"Reloading: .*helper\.py changed", since=mark, timeout=20)
    running = server.wait_for_output(r"Bokeh app running at: http://127\.0\.0\.1:(\d+)/uses_helper", since=mark,
                                     timeout=60)
    assert pull_texts(f"http://localhost:{running.group(1)}/uses_helper")["texts"] == {
        "v": "helper 2 dev_mode=True"}


def test_dev_with_several_processes_is_an_error():
    import subprocess
    import sys

    from tests.support.servers import REPO_ROOT

    result = subprocess.run([sys.executable, "-m", "bokeh_flask", "serve", "--dev", "--num-procs", "2"],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode != 0 and re.search(r"--dev runs one process", result.stderr)
