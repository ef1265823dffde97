"""Who may use the apps: the description of an auth provider, independent of any web framework.

An :class:`AuthProvider` holds what a ``bokeh serve`` auth module defines
(``get_user`` or ``get_user_async``, ``login_url`` or ``get_login_url``,
``logout_url``) and the views that log users in and out. The web layer builds
one from an ``--auth-module`` file or from a Flask-native ``authorize=`` check
(:mod:`bokeh_flask.web.auth`) and asks it for the user of each request.
"""
from __future__ import annotations

import typing as t
from dataclasses import dataclass

from .errors import ConfigError

UserGetter = t.Callable[[t.Any], t.Any]


@dataclass(frozen=True)
class AuthProvider:
    """How to find the current user and where to send those without one."""

    get_user: UserGetter | None = None
    get_user_async: t.Callable[[t.Any], t.Awaitable[t.Any]] | None = None
    login_url: str | None = None
    get_login_url: t.Callable[[t.Any], str] | None = None
    logout_url: str | None = None
    login_view: t.Callable[..., t.Any] | None = None
    logout_view: t.Callable[..., t.Any] | None = None
    #: relative login/logout URLs are under the blueprint (auth modules, as bokeh
    #: mounts them under --prefix) or the site's own URLs (``authorize=``)
    urls_under_blueprint: bool = True

    def __post_init__(self) -> None:
        if (self.get_user is None) == (self.get_user_async is None):
            raise ConfigError("An auth module must define exactly one of get_user or get_user_async")
        if (self.login_url is None) == (self.get_login_url is None):
            raise ConfigError("An auth module must define exactly one of login_url or get_login_url")
        if self.login_view is not None and (self.login_url is None or not _is_relative(self.login_url)):
            raise ConfigError("LoginHandler needs a relative login_url (it is mounted there)")
        if self.logout_view is not None and (self.logout_url is None or not _is_relative(self.logout_url)):
            raise ConfigError("LogoutHandler needs a relative logout_url (it is mounted there)")

    def user(self, handler: t.Any, finish: t.Callable[[t.Awaitable[t.Any]], t.Any]) -> t.Any:
        """The current user for the request behind ``handler``, or ``None``."""
        if self.get_user is not None:
            return self.get_user(handler)
        assert self.get_user_async is not None
        return finish(self.get_user_async(handler))

    def login_location(self, handler: t.Any) -> str:
        return self.get_login_url(handler) if self.get_login_url is not None else t.cast(str, self.login_url)


def _is_relative(url: str) -> bool:
    return url.startswith("/") and not url.startswith("//")
