"""Who may use the apps: ``--auth-module`` files and a Flask-native check.

An auth module is the file ``bokeh serve --auth-module`` takes, with the same
names: ``get_user(request_handler)`` or ``async def get_user_async(...)``,
``login_url`` (and optionally a ``LoginHandler``) or ``get_login_url(...)``,
and optionally ``logout_url`` and ``LogoutHandler``. The functions receive a
:class:`~bokeh_flask.web.tornado_shim.RequestHandlerShim`, which offers the parts of
Tornado's ``RequestHandler`` such modules read (cookies, signed cookies,
headers, arguments, ``remote_ip``). ``LoginHandler`` / ``LogoutHandler`` must be
Flask views (a function or a ``flask.views.View`` class).

In a Flask site, ``BokehFlask(..., authorize=fn, login_url="/login")`` does the
same with ``fn()`` returning the current user (from ``flask.session``,
Flask-Login's ``current_user`` ...) or ``None``.
"""
from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import typing as t
import uuid
from urllib.parse import urlsplit

from flask.views import View
from tornado.web import create_signed_value

from ..core.auth import AuthProvider
from ..core.errors import ConfigError
from .current import current_state
from .tornado_handlers import is_tornado_handler

log = logging.getLogger(__name__)


def load_auth_module(path: str) -> AuthProvider:
    """Read an ``--auth-module`` file (its code runs, as under ``bokeh serve``)."""
    if not os.path.isfile(path):
        raise ConfigError(f"Auth module file does not exist: {path}")
    spec = importlib.util.spec_from_file_location(f"bokeh_flask_auth_{uuid.uuid4().hex}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"Cannot load auth module {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise ConfigError(f"Auth module {path} failed to load: {type(error).__name__}: {error}") from error
    names = vars(module)
    return AuthProvider(
        get_user=names.get("get_user"),
        get_user_async=names.get("get_user_async"),
        login_url=names.get("login_url"),
        get_login_url=names.get("get_login_url"),
        logout_url=names.get("logout_url"),
        login_view=_flask_view(names.get("LoginHandler"), "LoginHandler", path),
        logout_view=_flask_view(names.get("LogoutHandler"), "LogoutHandler", path),
    )


def _flask_view(handler: t.Any, what: str, path: str) -> t.Callable[..., t.Any] | None:
    """A ``LoginHandler`` / ``LogoutHandler``: a Tornado ``RequestHandler`` class (served as
    bokeh serves it, see :mod:`.tornado_handlers`), a Flask view function or a ``flask.views.View``."""
    if handler is None:
        return None
    if is_tornado_handler(handler):
        return t.cast(t.Callable[..., t.Any], handler)
    if inspect.isclass(handler):
        if issubclass(handler, View):
            return t.cast(t.Callable[..., t.Any], handler.as_view(what.lower()))
        raise ConfigError(f"{what} in {path} must be a tornado.web.RequestHandler, a function or a "
                          "flask.views.View class")
    if callable(handler):
        return t.cast(t.Callable[..., t.Any], handler)
    raise ConfigError(f"{what} in {path} must be a tornado.web.RequestHandler, a function or a flask.views.View class")


def provider_from_bokeh(provider: t.Any) -> AuthProvider:
    """bokeh's ``AuthProvider`` object (``Server(auth_provider=...)``) as ours."""
    def attribute(name: str) -> t.Any:
        try:
            return getattr(provider, name, None)
        except Exception:  # bokeh's properties raise for what a provider does not define
            return None

    try:
        return AuthProvider(get_user=attribute("get_user"), get_user_async=attribute("get_user_async"),
                            login_url=attribute("login_url"), get_login_url=attribute("get_login_url"),
                            logout_url=attribute("logout_url"),
                            login_view=_flask_view(attribute("login_handler"), "login_handler", "auth_provider"),
                            logout_view=_flask_view(attribute("logout_handler"), "logout_handler", "auth_provider"))
    except ConfigError as error:
        raise ConfigError(f"auth_provider {type(provider).__name__}: {error}") from None


def provider_from_callable(authorize: t.Callable[[], t.Any], login_url: str | None,
                           logout_url: str | None = None) -> AuthProvider:
    """The Flask-native path: ``authorize()`` returns the current user or ``None``."""
    if login_url is None:
        raise ConfigError("authorize= needs login_url= (where to send users who are not logged in)")
    return AuthProvider(get_user=lambda handler: authorize(), login_url=login_url, logout_url=logout_url,
                        urls_under_blueprint=False)


def local_url(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this site, else ``default``: for ``?next=`` after a login.

    Only a path that starts with one ``/`` passes: no scheme, no host, no ``//``
    (another host to a browser), no backslash (browsers read ``/\\evil.example``
    as ``//evil.example``) and no control characters.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(c) < 32 or ord(c) == 127 for c in target):
        return default
    parts = urlsplit(target)
    return default if parts.scheme or parts.netloc else target


def set_secure_cookie(response: t.Any, name: str, value: str, **options: t.Any) -> None:
    """Set a cookie signed with ``--cookie-secret`` that ``get_secure_cookie`` will accept.

    For ``LoginHandler`` views: ``set_secure_cookie(response, "user", "alice")``.
    """
    secret = current_state().settings.cookie_secret
    if not secret:
        raise ConfigError("set_secure_cookie needs --cookie-secret (or BOKEH_COOKIE_SECRET)")
    options.setdefault("httponly", True)
    options.setdefault("samesite", "Lax")
    response.set_cookie(name, create_signed_value(secret, name, value).decode("ascii"), **options)
