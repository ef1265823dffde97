"""XSRF protection for state-changing requests (``--enable-xsrf-cookies``).

A token is a random value kept in the ``_xsrf`` cookie; a POST, PUT, PATCH or
DELETE must send the same token back in the ``_xsrf`` form field or the
``X-XSRFToken`` / ``X-CSRFToken`` header (a page of another site can make the
browser send the cookie, but cannot read it). As in Tornado this needs no
secret; with ``--cookie-secret`` (or Flask's ``SECRET_KEY``) the token is also
signed with itsdangerous, so only this server's tokens are taken. Forms get
the field from :func:`xsrf_form_html` (also a Jinja global of the site), the
counterpart of Tornado's helper of the same name.
"""
from __future__ import annotations

import hmac
import logging
import re
import secrets
import typing as t

from flask import Response, abort, current_app, g, request
from itsdangerous import BadSignature, URLSafeSerializer
from markupsafe import Markup

from .current import current_state

log = logging.getLogger(__name__)

COOKIE_NAME = "_xsrf"
FIELD_NAME = "_xsrf"
HEADERS = ("X-XSRFToken", "X-CSRFToken")
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_SALT = "bokeh-flask-xsrf"


#: what an unsigned token looks like (``secrets.token_urlsafe(24)``)
_RANDOM_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")


def _serializer(secret: str | bytes) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=_SALT)


def new_token(secret: str | bytes | None) -> str:
    token = secrets.token_urlsafe(24)
    return _serializer(secret).dumps(token) if secret else token


def token_is_valid(secret: str | bytes | None, token: str | None) -> bool:
    if not token:
        return False
    if not secret:
        return _RANDOM_TOKEN.fullmatch(token) is not None
    try:
        _serializer(secret).loads(token)
    except BadSignature:
        return False
    return True


def request_passes(secret: str | bytes | None, method: str, cookie: str | None, sent: str | None) -> bool:
    """True for safe methods, or when the sent token equals a valid cookie token."""
    if method.upper() not in UNSAFE_METHODS:
        return True
    return token_is_valid(secret, cookie) and sent is not None and hmac.compare_digest(cookie or "", sent)


def xsrf_secret() -> str | bytes | None:
    """The key XSRF tokens are signed with: ``--cookie-secret``, else the Flask ``SECRET_KEY``, else none."""
    secret = current_state().settings.cookie_secret or current_app.config.get("SECRET_KEY")
    return t.cast("str | bytes | None", secret or None)


def current_token() -> str:
    """This request's token (from its cookie, or a new one the response will set)."""
    token = g.get("bokeh_xsrf_token")
    if token is None:
        secret = xsrf_secret()
        cookie = request.cookies.get(COOKIE_NAME)
        token = cookie if token_is_valid(secret, cookie) else new_token(secret)
        g.bokeh_xsrf_token = token
    return t.cast(str, token)


def xsrf_form_html() -> Markup:
    """A hidden form field carrying the XSRF token (put it in every POST form)."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(FIELD_NAME, current_token())


def check_xsrf() -> None:
    """With ``xsrf_cookies`` on, unsafe methods must echo the ``_xsrf`` cookie's token."""
    if not current_state().settings.xsrf_cookies:
        return
    sent = request.form.get(FIELD_NAME) or next((request.headers[h] for h in HEADERS if h in request.headers), None)
    if not request_passes(xsrf_secret(), request.method, request.cookies.get(COOKIE_NAME), sent):
        log.warning("Refused %s %s: missing or wrong XSRF token", request.method, request.path)
        abort(403, "XSRF cookie does not match the _xsrf argument or X-XSRFToken header")


def set_xsrf_cookie(response: Response) -> Response:
    """Blueprint ``after_request``: store a token handed out during this request."""
    token = g.get("bokeh_xsrf_token")
    if token is not None and request.cookies.get(COOKIE_NAME) != token:
        response.set_cookie(COOKIE_NAME, token, samesite="Lax")
    return response
