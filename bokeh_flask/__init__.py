"""bokeh-flask: serve live Bokeh applications from a Flask blueprint on gevent.

The public names are imported lazily so that ``bokeh-flask serve`` can let
gevent patch the standard library before Flask or bokeh are imported.
"""
from __future__ import annotations

import importlib
import typing as t

if t.TYPE_CHECKING:
    from .extension import BokehFlask as BokehFlask
    from .factory import create_app as create_app
    from .factory import create_app_from_env as create_app_from_env
    from .server import Server as Server
    from .settings import ServerSettings as ServerSettings

__all__ = ["BokehFlask", "Server", "ServerSettings", "create_app", "create_app_from_env"]

_WHERE = {
    "BokehFlask": ".extension",
    "Server": ".server",
    "ServerSettings": ".settings",
    "create_app": ".factory",
    "create_app_from_env": ".factory",
}


def __getattr__(name: str) -> t.Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module 'bokeh_flask' has no attribute {name!r}")
