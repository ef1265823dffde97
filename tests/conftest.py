"""Fixtures shared by every test module.

* ``serve`` / ``serve_module``: ``serve(*files, extra_args=())`` starts a server
  subprocess and returns a :class:`~tests.support.servers.RunningServer`
  (a ``str`` equal to ``http://127.0.0.1:PORT``); ``serve`` servers stop when
  the test ends, ``serve_module`` servers when the module ends.
* ``browser`` / ``page`` / ``console``: headless Chromium through Playwright,
  from the ``tests.support.browser`` plugin (see there).
"""
from __future__ import annotations

import pytest

from tests.support.servers import _ServerFactory

pytest_plugins = ("tests.support.browser",)


@pytest.fixture(autouse=True)
def _clean_bokeh_environment(monkeypatch):
    """Each test starts without bokeh's ``BOKEH_*`` variables or a loaded bokeh config file."""
    import os

    from bokeh.settings import settings as bokeh_settings

    for name in [n for n in os.environ if n.startswith("BOKEH_") and not n.startswith("BOKEH_FLASK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(bokeh_settings, "_config_override", {})


@pytest.fixture
def serve():
    """``serve(*files, extra_args=())`` -> RunningServer, stopped when the test ends."""
    factory = _ServerFactory()
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def serve_module():
    """Like ``serve`` but servers live until the end of the test module."""
    factory = _ServerFactory()
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A redis-server of the module's own (tests/support/redis_server.py), stopped after the module."""
    from tests.support.redis_server import RedisServer  # skips the module's Redis tests without redis-server

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()
