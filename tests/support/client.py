"""Run ``bokeh.client`` in a separate process, as users run it, and read the result."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import typing as t

from tests.support.servers import REPO_ROOT

CLIENT_TIMEOUT = 60.0


def run_client(script: str, *args: str, timeout: float = CLIENT_TIMEOUT) -> t.Any:
    """Run a Python snippet that prints one JSON document last; return it parsed."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True,
                            text=True, timeout=timeout, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise AssertionError(f"client failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


PULL_TEXTS = """
    import json, sys
    from bokeh.client import pull_session
    from bokeh.models import Div
    kwargs = {"url": sys.argv[1]}
    if len(sys.argv) > 2:
        kwargs["session_id"] = sys.argv[2]
    with pull_session(**kwargs) as session:
        texts = {m.name or m.id: m.text for m in session.document.select({"type": Div})}
        print(json.dumps({"session_id": session.id, "texts": texts}))
"""


def pull_texts(url: str, session_id: str | None = None) -> dict[str, t.Any]:
    """``pull_session`` the app at ``url``; the text of every Div by name, and the session id."""
    return run_client(PULL_TEXTS, url, *([session_id] if session_id else []))
