"""bokeh-flask: serve live Bokeh applications from a Flask blueprint on gevent.

The public names are imported lazily so that ``bokeh-flask serve`` can let
gevent patch the standard library before Flask or bokeh are imported. The
code lives in three layers, whose imports point one way (runtime -> web ->
core; see ``docs/architecture.md``).
"""
from __future__ import annotations

import importlib
import typing as t

if t.TYPE_CHECKING:
    from .core.settings import ServerSettings as ServerSettings
    from .runtime.assembly import BokehFlask as BokehFlask
    from .runtime.assembly import create_app as create_app
    from .runtime.assembly import create_app_from_env as create_app_from_env
    from .runtime.server import Server as Server
    from .web.auth import local_url as local_url
    from .web.auth import set_secure_cookie as set_secure_cookie
    from .web.xsrf import xsrf_form_html as xsrf_form_html

__all__ = ["BokehFlask", "Server", "ServerSettings", "create_app", "create_app_from_env", "local_url",
           "set_secure_cookie", "xsrf_form_html"]

_WHERE = {
    "BokehFlask": ".runtime.assembly",
    "Server": ".runtime.server",
    "ServerSettings": ".core.settings",
    "create_app": ".runtime.assembly",
    "create_app_from_env": ".runtime.assembly",
    "local_url": ".web.auth",
    "set_secure_cookie": ".web.auth",
    "xsrf_form_html": ".web.xsrf",
}


def __getattr__(name: str) -> t.Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module 'bokeh_flask' has no attribute {name!r}")
