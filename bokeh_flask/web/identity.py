"""Who a publishing request comes from: ``defaultuser``, the site's login, an API key or the login cookie.

Single-user mode (the default, as in the original server): everyone is
:data:`~bokeh_flask.core.users.DEFAULT_USER`. Multi-user mode (``--multi-user``), in order:

1. a Flask site's own login: ``BokehFlask(publishing_user=...)``, a callable that returns the
   user's name (or None), or the user that ``authorize=`` / an auth module accepted;
2. ``Authorization: Bearer <name>:<api key>`` (``bokeh_flask.client`` sends it; a site's users
   make keys for their scripts on the ``/bokeh/`` page);
3. without a site login, the ``bokeh_flask_login`` cookie the login page sets,
   ``<name>:<api key>``: a key of its own, revoked when the user logs out.

Keys are checked against their hashes in the store on every request, so a revoked key or a
removed user stops working everywhere at once, in every worker and on every host.
"""
from __future__ import annotations

import logging
import typing as t

from flask import Response, g, request

from ..core.users import DEFAULT_USER
from .accounts import api_key_matches
from .current import base_url, current_state

log = logging.getLogger(__name__)

LOGIN_COOKIE = "bokeh_flask_login"
#: how long the login cookie lasts (seconds)
LOGIN_COOKIE_SECONDS = 30 * 24 * 3600


def split_credentials(value: str | None) -> tuple[str, str] | None:
    """``"<name>:<key>"`` as (name, key), or None."""
    if not value or ":" not in value:
        return None
    name, key = value.split(":", 1)
    return (name, key) if name and key else None


def bearer_credentials() -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return split_credentials(value.strip()) if scheme.lower() == "bearer" else None


def publishing_user() -> str | None:
    """The name this request acts as, or None when it is anonymous (cached per request)."""
    if "bokeh_publishing_user" in g:
        return t.cast("str | None", g.bokeh_publishing_user)
    user = _find_user()
    g.bokeh_publishing_user = user
    return user


def authenticated_by_cookie() -> bool:
    """The request's identity came from the login cookie (so unsafe methods need the XSRF token)."""
    return bool(g.get("bokeh_publishing_by_cookie"))


def _find_user() -> str | None:
    state = current_state()
    if not state.settings.multi_user:
        return DEFAULT_USER
    site_user = site_login_user(state)
    if site_user is not None:
        return site_user
    store = state.publications.store if state.publications is not None else None
    if store is None:
        return None
    credentials = bearer_credentials()
    if credentials is not None:
        return _key_user(store, credentials, by_cookie=False)
    if site_login_in_use(state):
        return None  # the site's login decides; its users' scripts use API keys
    credentials = split_credentials(request.cookies.get(LOGIN_COOKIE))
    return _key_user(store, credentials, by_cookie=True) if credentials is not None else None


def _key_user(store: t.Any, credentials: tuple[str, str], by_cookie: bool) -> str | None:
    name, key = credentials
    if api_key_matches(store.get_user(name), key):
        g.bokeh_publishing_by_cookie = by_cookie
        return name
    log.info("Refused %s credentials for %r", "cookie" if by_cookie else "API key", name[:64])
    return None


def site_login_in_use(state: t.Any) -> bool:
    """The Flask site's own login stands in for the built-in one (``publishing_user=`` or ``authorize=``)."""
    return state.publications_user_loader is not None or state.auth is not None


def site_login_user(state: t.Any) -> str | None:
    """The user the site's login says this is: ``publishing_user()``, else the one ``authorize=`` (or an
    auth module) accepted for this request."""
    loader = state.publications_user_loader
    if loader is not None:
        name = loader()
        return str(name) if name else None
    if state.auth is not None:
        user = g.get("bokeh_user")
        return str(user) if user else None
    return None


def cookie_path() -> str:
    """The login cookie goes to the publishing pages only (never to the apps, whose tokens copy cookies)."""
    return base_url(current_state()) + "/bokeh"


def set_login_cookie(response: Response, name: str, key: str) -> None:
    response.set_cookie(LOGIN_COOKIE, f"{name}:{key}", max_age=LOGIN_COOKIE_SECONDS, path=cookie_path(),
                        httponly=True, samesite="Lax", secure=request.scheme == "https")


def clear_login_cookie(response: Response) -> None:
    response.delete_cookie(LOGIN_COOKIE, path=cookie_path())
