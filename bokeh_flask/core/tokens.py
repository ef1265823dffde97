"""Session ids and tokens, with ``bokeh serve``'s rules, on ``bokeh.util.token``.

Ids and tokens are made and checked only by bokeh's own functions, always
called with the secret key and signing mode passed explicitly, so BokehJS,
``bokeh.client`` and ``bokeh.embed`` interoperate with this server.
"""
from __future__ import annotations

import calendar
import datetime as dt
import logging
import typing as t

from bokeh.util.token import (
    check_session_id_signature,
    check_token_signature,
    generate_jwt_token,
    generate_session_id,
    get_session_id,
)

from .errors import PermissionDenied
from .limits import read_token_payload
from .requests import RequestInfo
from .settings import ServerSettings

log = logging.getLogger(__name__)

SESSION_ID_HEADER = "Bokeh-Session-Id"
#: largest token handed to a page: it comes back in a handshake header
MAX_TOKEN_BYTES = 4096


def requested_session(arguments: t.Mapping[str, str], headers: t.Mapping[str, str],
                      settings: ServerSettings) -> tuple[str, str | None]:
    """The session id a page request asks for, and the token it came with (if any).

    ``?bokeh-token=``, ``?bokeh-session-id=`` and the ``Bokeh-Session-Id`` header are
    accepted as ``bokeh serve`` accepts them; without any, a fresh id is made
    unless the server is configured not to generate ids.
    """
    token = arguments.get("bokeh-token")
    session_id = arguments.get("bokeh-session-id")
    header_id = headers.get(SESSION_ID_HEADER)
    if header_id is not None:
        if session_id is not None:
            raise PermissionDenied("session ID was provided as an argument and header")
        session_id = header_id
    if token is not None:
        if session_id is not None:
            raise PermissionDenied("Both token and session ID were provided")
        session_id = session_id_of(token)
    elif session_id is None:
        if not settings.generate_session_ids:
            raise PermissionDenied("No bokeh-session-id provided")
        session_id = generate_session_id(secret_key=settings.secret_key, signed=settings.sign_sessions)
    if not session_id:
        raise PermissionDenied("Session ID must not be empty")
    return session_id, token


def session_id_of(token: str) -> str:
    """The session id inside a token; a token that cannot be read is refused."""
    try:
        session_id = get_session_id(token)
    except Exception:
        raise PermissionDenied("Invalid token: it could not be decoded") from None
    if not isinstance(session_id, str) or not session_id:
        raise PermissionDenied("Invalid token: it names no session")
    return session_id


def token_for(session_id: str, request: RequestInfo, settings: ServerSettings,
              extra_payload: t.Mapping[str, t.Any] | None = None) -> str:
    """A token carrying the request's headers, cookies and arguments, as bokeh makes them."""
    headers = _selected(request.headers, settings.include_headers, settings.exclude_headers)
    cookies = _selected(request.cookies, settings.include_cookies, settings.exclude_cookies)
    if cookies and "Cookie" in headers and "Cookie" not in (settings.include_headers or ()):
        del headers["Cookie"]
    payload: dict[str, t.Any] = {"headers": headers, "cookies": cookies, "arguments": dict(request.arguments)}
    payload.update(extra_payload or {})
    dropped = [f"{kind[:-1]} {name}" for kind in ("headers", "cookies")
               for name in [n for n, v in payload[kind].items() if len(str(v)) > MAX_TOKEN_BYTES]]
    for entry in dropped:
        kind, name = entry.split(" ", 1)
        del payload[kind + "s"][name]
    token = _make(session_id, payload, settings)
    while len(token) > MAX_TOKEN_BYTES and (payload["headers"] or payload["cookies"]):
        # the token travels in the websocket's Sec-WebSocket-Protocol header, which servers and
        # proxies cap (bokeh#11301): shed the largest headers and cookies until it fits
        kind, name = max(((k, n) for k in ("headers", "cookies") for n in payload[k]),
                         key=lambda kn: len(str(payload[kn[0]][kn[1]])))
        del payload[kind][name]
        dropped.append(f"{kind[:-1]} {name}")
        token = _make(session_id, payload, settings)
    if dropped:
        log.warning("Left %s out of the session token to keep it under %d bytes; the app will not see them "
                    "(--exclude-headers / --exclude-cookies leave them out on purpose)",
                    ", ".join(dropped), MAX_TOKEN_BYTES)
    return token


def _make(session_id: str, payload: dict[str, t.Any], settings: ServerSettings) -> str:
    return generate_jwt_token(session_id, secret_key=settings.secret_key, signed=settings.sign_sessions,
                              expiration=settings.session_token_expiration, extra_payload=payload)


def check_token(token: str, settings: ServerSettings, session_exists: t.Callable[[str], bool] | None = None) -> str:
    """Verify a websocket's token (signature, expiry); returns its session id.

    An expired token is still accepted to reconnect to a live session that has
    already had a websocket (``session_exists``): a page reconnecting after a
    long idle keeps working (bokeh#14416). It never opens a session's first
    websocket (what ``--session-token-expiration`` promises, as in bokeh) nor
    creates one.
    """
    session_id = session_id_of(token)
    try:
        valid = check_token_signature(token, secret_key=settings.secret_key, signed=settings.sign_sessions)
    except Exception:
        valid = False
    if not valid:
        log.warning("Token for session %r had an invalid signature", session_id)
        raise PermissionDenied("Invalid token signature")
    payload = read_token_payload(token)
    expiry = payload.get("session_expiry")
    if not isinstance(expiry, (int, float)):
        raise PermissionDenied("Session expiry has not been provided")
    if _now() >= expiry:
        if session_exists is not None and session_exists(session_id):
            log.info("Accepted an expired token to reconnect to the live session %s", session_id)
            return session_id
        raise PermissionDenied(
            "Token is expired. Configure the app with a larger value for --session-token-expiration if necessary"
        )
    return session_id


def check_page_token(token: str, settings: ServerSettings) -> None:
    """A ``?bokeh-token=`` given to a page must be well formed and carry a valid signature."""
    read_token_payload(token)
    try:
        valid = check_token_signature(token, secret_key=settings.secret_key, signed=settings.sign_sessions)
    except Exception:
        valid = False
    if not valid:
        raise PermissionDenied("Invalid token or session ID")


def check_session_id(session_id: str, settings: ServerSettings) -> None:
    """In signed modes a session id must carry a valid signature."""
    if not settings.sign_sessions:
        return
    if not check_session_id_signature(session_id, secret_key=settings.secret_key, signed=True):
        log.warning("Session id had an invalid signature: %r", session_id)
        raise PermissionDenied("Invalid token or session ID")


def _selected(values: t.Mapping[str, str], include: t.Sequence[str] | None,
              exclude: t.Sequence[str] | None) -> dict[str, str]:
    if include is not None:
        wanted = {name.lower() for name in include}
        return {k: v for k, v in values.items() if k.lower() in wanted}
    unwanted = {name.lower() for name in (exclude or ())}
    return {k: v for k, v in values.items() if k.lower() not in unwanted}


def _now() -> int:
    return calendar.timegm(dt.datetime.now(tz=dt.timezone.utc).timetuple())
