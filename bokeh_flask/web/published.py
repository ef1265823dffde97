"""Viewing published documents: who may see what, the pages, autoload.js and the websocket.

``/bokeh/doc/<docid>`` is the owner's page (``/bokeh/doc/<docid>/<plotid>`` shows one
root, as in the original server); ``?public=true`` is anyone's, once the document is
published, and read-only. Another user's private document is 403; to an anonymous
request it is the same 404 as a missing one, so its existence is not revealed.
"""
from __future__ import annotations

import functools
import logging
import os
import typing as t
from dataclasses import dataclass

from bokeh.embed.elements import html_page_for_render_items
from bokeh.embed.util import RenderItem
from bokeh.util.token import generate_jwt_token, generate_session_id
from flask import Response, abort, jsonify, request
from werkzeug.exceptions import HTTPException

from ..core.connection import ServerConnection
from ..core.errors import PermissionDenied, StoreConflict, StoreError, StoreUnavailable
from ..core.limits import read_token_payload
from ..core.publications import ACCESS_KEY, PublishedSession, Publications
from ..core.state import BokehState
from ..core.store import StoredDocument, check_docid
from .current import current_state
from .identity import publishing_user
from .pages import autoload_response, checked_element_id, resources_root
from .resources import page_bundle
from .websocket import check_handshake, serve_websocket

log = logging.getLogger(__name__)

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def publications(state: BokehState) -> Publications:
    """The registration's publications, or a 404 naming the switch that turns them on."""
    if state.publications is None:
        abort(404, "Publishing is off on this server: start it with --publishing (or --multi-user, --backend ...), "
                   "or pass publishing=True to BokehFlask")
    return state.publications


def store_errors(view: F) -> F:
    """Store failures as HTTP answers: unavailable 503, conflict 409, any other refusal 400."""
    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return view(*args, **kwargs)
        except StoreUnavailable as error:
            log.error("%s %s: %s", request.method, request.path, error)
            abort(503, f"{error}. Nothing stored is lost; try again once it is back.")
        except StoreConflict as error:
            abort(409, str(error))
        except StoreError as error:
            abort(400, str(error))
    return t.cast(F, wrapper)


def wants_public() -> bool:
    return request.args.get("public", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Access:
    """What a request may do with one document."""

    docid: str
    stored: StoredDocument | None
    user: str | None
    writer: bool


def document_access(docid: str, public: bool, creating: bool = False) -> Access:
    """The access rules (see the module's docstring); aborts with 400, 403 or 404."""
    try:
        check_docid(docid)
    except StoreError as error:
        abort(400, str(error))
    store = publications(current_state()).store
    user = publishing_user()
    stored = store.get(docid)
    missing = f"No document {docid!r}" + (" (log in to see your own documents)" if user is None else "")
    if stored is None:
        if creating and user is not None and not public:
            return Access(docid, None, user, True)
        abort(404, missing)
    owner = user is not None and stored.owner == user
    if public:
        if stored.public:
            return Access(docid, stored, user, False)
        if owner:
            abort(403, f"Document {docid!r} is not published: publish it first (Session.publish())")
    elif owner:
        return Access(docid, stored, user, True)
    if user is None and not stored.public:
        abort(404, missing)  # the answer for a name nobody uses: its existence stays secret
    if stored.public:
        abort(403, f"Document {docid!r} belongs to another user; it is published: add ?public=true to view it")
    abort(403, f"Document {docid!r} belongs to another user")


def publication_token(state: BokehState, public: bool) -> str:
    """A bokeh token for a viewer: only the access mode travels in it (never the request's cookies)."""
    settings = state.settings
    secret = settings.secret_key
    session_id = generate_session_id(secret_key=secret, signed=settings.sign_sessions)
    return t.cast(str, generate_jwt_token(session_id, secret_key=secret, signed=settings.sign_sessions,
                                          extra_payload={ACCESS_KEY: "public" if public else "owner"},
                                          expiration=settings.session_token_expiration))


@store_errors
def document_page(docid: str, plotid: str | None = None) -> Response:
    """``GET /bokeh/doc/<docid>[/<plotid>]``: the document (or one of its roots), live."""
    state = current_state()
    public = wants_public()
    access = document_access(docid, public)
    session = publications(state).live(docid, access.stored)
    roots = list(session.document.roots)
    if plotid is not None:
        roots = [root for root in roots if root.id == plotid]
        if not roots:
            abort(404, f"Document {docid!r} has no plot {plotid!r}")
    item = RenderItem(token=publication_token(state, public), roots=roots, use_for_title=plotid is None)
    title = session.document.title or docid
    html = html_page_for_render_items(page_bundle(resources_root(state)), {}, [item], title)
    return Response(html, mimetype="text/html")


@store_errors
def document_autoload(docid: str) -> Response:
    """``GET /bokeh/doc/<docid>/autoload.js``: embed it in another page (``autoload_server`` / ``server_document``)."""
    state = current_state()
    element_id = checked_element_id()
    public = wants_public()
    document_access(docid, public)
    return autoload_response(state, publication_token(state, public), element_id)


@store_errors
def document_websocket(docid: str) -> Response:
    """``/bokeh/doc/<docid>/ws``: the owner may write (and create); a public viewer only reads."""
    state = current_state()
    pubs = publications(state)
    try:
        token = check_handshake(state)
        public = read_token_payload(token).get(ACCESS_KEY) == "public"
    except PermissionDenied as denied:
        log.warning("Refused websocket for %s: %s", request.path, denied.reason)
        abort(denied.status, denied.reason)
    access = document_access(docid, public, creating=True)
    session: PublishedSession = pubs.live(docid, access.stored)

    def grant(connection: ServerConnection) -> None:
        if access.writer and access.user is not None:
            session.allow_writes(connection, access.user)
        log.info("%s of %s connected to process %d", "Owner" if access.writer else "Viewer", docid, os.getpid())

    return serve_websocket(state, session, on_connection=grant)


def json_errors(view: F) -> F:
    """HTTP errors of a JSON view as ``{"error": ...}`` with their status."""
    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return view(*args, **kwargs)
        except HTTPException as error:
            response = jsonify({"error": error.description})
            response.status_code = error.code or 500
            for name in ("Retry-After",):
                if error.response is not None and name in error.response.headers:
                    response.headers[name] = error.response.headers[name]
            return response
    return t.cast(F, wrapper)
