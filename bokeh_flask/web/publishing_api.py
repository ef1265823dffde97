"""The publishing JSON API (``bokeh_flask.client`` speaks it) and the account pages.

Every unsafe request authenticated by the login cookie must carry the XSRF token
(the ``_xsrf`` form field or ``X-XSRFToken`` header); one with an API key in its
``Authorization`` header needs none, since another site's page cannot send it.
Logins are rate-limited per name and per client address.
"""
from __future__ import annotations

import logging
import math
import typing as t

from flask import Response, abort, jsonify, redirect, render_template, request
from werkzeug.exceptions import TooManyRequests

from ..core.errors import StoreConflict, StoreError
from ..core.store import StoredDocument
from ..core.users import DEFAULT_USER
from .accounts import issue_api_key, new_user, password_matches, revoke_api_key, site_user_record
from .current import base_url, current_state
from .identity import (LOGIN_COOKIE, authenticated_by_cookie, bearer_credentials, clear_login_cookie,
                       publishing_user, set_login_cookie, site_login_in_use, split_credentials)
from .published import document_access, json_errors, publications, store_errors
from .requests import client_address
from .xsrf import COOKIE_NAME, FIELD_NAME, HEADERS, request_passes, xsrf_secret

log = logging.getLogger(__name__)


# -- helpers -------------------------------------------------------------------

def check_form_xsrf(api: bool = False) -> None:
    """Unsafe requests must show they come from this site or a script (whatever ``--enable-xsrf-cookies`` says).

    A form echoes the ``_xsrf`` cookie's token. An API call may instead carry an API key, or be a
    JSON request: another site's page can send neither without a CORS preflight, which is not answered.
    """
    if bearer_credentials() is not None and not authenticated_by_cookie():
        return
    if api and request.mimetype == "application/json":
        return
    sent = request.form.get(FIELD_NAME) or next((request.headers[h] for h in HEADERS if h in request.headers), None)
    if not request_passes(xsrf_secret(), request.method, request.cookies.get(COOKIE_NAME), sent):
        log.warning("Refused %s %s: missing or wrong XSRF token", request.method, request.path)
        abort(403, "XSRF token missing or wrong: send the _xsrf cookie's value as the _xsrf field or X-XSRFToken header")


def doc_info(stored: StoredDocument) -> dict[str, t.Any]:
    root = request.host_url.rstrip("/") + base_url(current_state())
    url = f"{root}/bokeh/doc/{stored.docid}"
    return {"docid": stored.docid, "owner": stored.owner, "title": stored.title, "public": stored.public,
            "version": stored.version, "doc_url": url, "public_url": url + "?public=true"}


def require_user() -> str:
    user = publishing_user()
    if user is None:
        abort(401, "Not logged in: Session(root_url).login(name, password), or send "
                   "'Authorization: Bearer <name>:<api key>'")
    return user


def credentials_from_request() -> tuple[str, str]:
    data = request.get_json(silent=True) if request.is_json else None
    source = data if isinstance(data, dict) else request.form
    name, password = source.get("username"), source.get("password")
    if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
        abort(400, "Give a username and a password")
    return name, password


def multi_user_store() -> t.Any:
    state = current_state()
    store = publications(state).store
    if not state.settings.multi_user:
        abort(403, f"This server is in single-user mode: everyone is {DEFAULT_USER!r}. Start it with --multi-user "
                   "to have users")
    if site_login_in_use(state):
        abort(403, "This site's own login is used here: log in to the site (scripts use an API key made on "
                   "the /bokeh/ page)")
    return store


def log_in(name: str, password: str) -> str:
    """A new API key for ``name`` if the password is right; 401, or 429 when too many attempts failed."""
    store = multi_user_store()
    limiter = publications(current_state()).login_limiter
    keys = (f"user:{name}", f"address:{client_address(request) or '?'}")
    wait = limiter.retry_after(*keys)
    if wait > 0:
        log.warning("Refused a login as %r: too many failures", name[:64])
        raise TooManyRequests(f"Too many failed logins: try again in {math.ceil(wait)} s",
                              response=Response(status=429, headers={"Retry-After": str(math.ceil(wait))}))
    if not password_matches(store.get_user(name), password):
        limiter.failed(*keys)
        abort(401, "Wrong user name or password")
    limiter.succeeded(keys[0])
    return issue_api_key(store, name)


def register_user(name: str, password: str) -> str:
    state = current_state()
    store = multi_user_store()
    if not state.settings.open_registration:
        abort(403, "Registration is closed on this server: ask an admin (bokeh-flask user add)")
    try:
        store.add_user(new_user(name, password))
    except StoreConflict:
        abort(409, f"User name {name!r} is taken")
    except StoreError as error:
        abort(400, str(error))
    log.info("Registered user %r", name)
    return issue_api_key(store, name)


def log_out() -> None:
    store = publications(current_state()).store
    for credentials in (bearer_credentials(), split_credentials(request.cookies.get(LOGIN_COOKIE))):
        if credentials is not None and current_state().settings.multi_user:
            revoke_api_key(store, *credentials)


# -- JSON API ------------------------------------------------------------------------

@json_errors
@store_errors
def api_register() -> Response:
    name, password = credentials_from_request()
    return jsonify({"username": name, "api_key": register_user(name, password)})


@json_errors
@store_errors
def api_login() -> Response:
    name, password = credentials_from_request()
    return jsonify({"username": name, "api_key": log_in(name, password)})


@json_errors
@store_errors
def api_logout() -> Response:
    check_form_xsrf(api=True)
    log_out()
    response = jsonify({})
    clear_login_cookie(response)
    return response


@json_errors
@store_errors
def api_whoami() -> Response:
    state = current_state()
    publications(state)
    return jsonify({"username": publishing_user(), "multi_user": state.settings.multi_user})


@json_errors
@store_errors
def api_docs() -> Response:
    store = publications(current_state()).store
    if request.args.get("public", "").lower() in ("1", "true", "yes", "on"):
        return jsonify({"docs": [doc_info(d) for d in store.list(public=True)]})
    return jsonify({"docs": [doc_info(d) for d in store.list(owner=require_user())]})


@json_errors
@store_errors
def api_doc(docid: str) -> Response:
    if request.method == "DELETE":
        check_form_xsrf(api=True)
        access = document_access(docid, public=False)
        if not access.writer:
            abort(403, f"Only the owner may delete {docid!r}")
        publications(current_state()).store.delete(docid)
        return jsonify({})
    access = document_access(docid, public=False)
    assert access.stored is not None
    return jsonify(doc_info(access.stored))


def _set_public(docid: str, public: bool) -> Response:
    check_form_xsrf(api=True)
    access = document_access(docid, public=False)
    if not access.writer:
        abort(403, f"Only the owner may publish or unpublish {docid!r}")
    pubs = publications(current_state())
    stored = pubs.store.set_public(docid, public)
    for session in pubs.sessions:
        if session.docid == docid:
            session.public = public
    log.info("Document %s %s by %s", docid, "published" if public else "unpublished", access.user)
    return jsonify(doc_info(stored))


@json_errors
@store_errors
def api_publish(docid: str) -> Response:
    return _set_public(docid, True)


@json_errors
@store_errors
def api_unpublish(docid: str) -> Response:
    return _set_public(docid, False)


@json_errors
@store_errors
def api_new_key() -> Response:
    """``POST /bokeh/api/keys``: a new API key for the user this request is (shown once)."""
    check_form_xsrf(api=True)
    return jsonify({"username": require_user(), "api_key": new_key_for_current_user()})


def new_key_for_current_user() -> str:
    """A key for the logged-in user; a site login's user gets a record of their own first (no password)."""
    state = current_state()
    if not state.settings.multi_user:
        abort(403, f"This server is in single-user mode: everyone is {DEFAULT_USER!r} and needs no key")
    store = publications(state).store
    name = require_user()
    if store.get_user(name) is None:
        try:
            store.add_user(site_user_record(name))
        except StoreConflict:
            pass  # made meanwhile by another request
    return issue_api_key(store, name)


# -- pages -----------------------------------------------------------------------------

@store_errors
def index() -> str:
    """``GET /bokeh/``: my documents and the public ones."""
    state = current_state()
    store = publications(state).store
    user = publishing_user()
    mine = [doc_info(d) for d in store.list(owner=user)] if user is not None else []
    public = [doc_info(d) for d in store.list(public=True)]
    return render_template("bokeh_flask/publishing_index.html", user=user, mine=mine, public=public,
                           prefix=base_url(state), multi_user=state.settings.multi_user,
                           site_login=site_login_in_use(state),
                           registration=state.settings.open_registration)


@store_errors
def login_page() -> t.Any:
    return _account_form("login")


@store_errors
def register_page() -> t.Any:
    return _account_form("register")


def _account_form(kind: str) -> t.Any:
    state = current_state()
    multi_user_store()
    error = None
    status = 200
    if request.method == "POST":
        check_form_xsrf()
        name, password = credentials_from_request()
        try:
            key = log_in(name, password) if kind == "login" else register_user(name, password)
        except TooManyRequests as refused:
            error, status = refused.description, 429
        except Exception as refused:
            if not hasattr(refused, "code"):
                raise
            error, status = getattr(refused, "description", str(refused)), refused.code  # type: ignore[attr-defined]
        else:
            response = redirect(_safe_next(base_url(state) + "/bokeh/"))
            set_login_cookie(response, name, key)
            return response
    html = render_template("bokeh_flask/publishing_account.html", kind=kind, error=error, prefix=base_url(state),
                           registration=state.settings.open_registration)
    return html, status


@store_errors
def new_key_page() -> t.Any:
    """``POST /bokeh/keys`` (the index page's button): a new API key, shown once."""
    check_form_xsrf()
    state = current_state()
    key = new_key_for_current_user()
    return render_template("bokeh_flask/publishing_key.html", user=publishing_user(), key=key,
                           prefix=base_url(state), root=request.host_url.rstrip("/") + base_url(state) + "/")


@store_errors
def logout_page() -> Response:
    check_form_xsrf()
    log_out()
    response = redirect(base_url(current_state()) + "/bokeh/")
    clear_login_cookie(response)
    return response


def _safe_next(default: str) -> str:
    """The ``next`` argument if it is a path on this site, else ``default``."""
    target = request.args.get("next", "")
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default

