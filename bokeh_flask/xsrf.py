"""XSRF protection for state-changing requests (``--enable-xsrf-cookies``).

A token is a random value signed with itsdangerous, kept in the ``_xsrf``
cookie; a POST, PUT, PATCH or DELETE must send the same token back in the
``_xsrf`` form field or the ``X-XSRFToken`` / ``X-CSRFToken`` header. Forms get
the field from :func:`xsrf_form_html` (also a Jinja global of the site), the
counterpart of Tornado's helper of the same name.
"""
from __future__ import annotations

import hmac
import secrets
import typing as t

from itsdangerous import BadSignature, URLSafeSerializer
from markupsafe import Markup

COOKIE_NAME = "_xsrf"
FIELD_NAME = "_xsrf"
HEADERS = ("X-XSRFToken", "X-CSRFToken")
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_SALT = "bokeh-flask-xsrf"


def _serializer(secret: str | bytes) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=_SALT)


def new_token(secret: str | bytes) -> str:
    return _serializer(secret).dumps(secrets.token_urlsafe(24))


def token_is_valid(secret: str | bytes, token: str | None) -> bool:
    if not token:
        return False
    try:
        _serializer(secret).loads(token)
    except BadSignature:
        return False
    return True


def request_passes(secret: str | bytes, method: str, cookie: str | None, sent: str | None) -> bool:
    """True for safe methods, or when the sent token equals a valid cookie token."""
    if method.upper() not in UNSAFE_METHODS:
        return True
    return token_is_valid(secret, cookie) and sent is not None and hmac.compare_digest(cookie or "", sent)


def current_token() -> str:
    """This request's token (from its cookie, or a new one the response will set)."""
    from flask import g, request

    from .views import xsrf_secret

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
