"""The HTTP views of the bokeh blueprint: pages, autoload.js, metadata, static files, index."""
from __future__ import annotations

import functools
import logging
import re
import typing as t
from dataclasses import dataclass, replace
from urllib.parse import urlencode, urlparse

from flask import Response, abort, current_app, g, jsonify, redirect, render_template, request, send_file
from jinja2 import Template

from .errors import PermissionDenied, SessionError
from .origins import origin_allowed, same_origin
from .requests import WORKER_KEY, RequestInfo
from .resources import (ONE_YEAR_SECONDS, bokehjs_dir, extension_dirs, icon_path, page_bundle, resources_for,
                        safe_join)
from .settings import env_websocket_origins
from .state import BokehState, ProcessInfo
from .tokens import check_page_token, check_session_id, requested_session, token_for

if t.TYPE_CHECKING:
    from .sessions import ServerSession

log = logging.getLogger(__name__)


def current_state() -> BokehState:
    """The :class:`BokehState` of the blueprint that is handling this request."""
    name = (request.blueprint or "").rsplit(".", 1)[-1]
    state: BokehState = current_app.extensions["bokeh"][name]
    state.start()
    return state


def same_origin_allowed(state: BokehState, origin: str) -> bool:
    """A page of this very host, when the settings trust same-origin pages.

    ``request.host`` honours Flask's ``TRUSTED_HOSTS``: an untrusted Host header
    (DNS rebinding) fails here instead of matching its own Origin.
    """
    if not state.settings.allow_same_origin:
        return False
    try:
        host = request.host
    except Exception:  # werkzeug's SecurityError for a host outside TRUSTED_HOSTS
        return False
    return same_origin(origin, host)


#: what autoload.js accepts as ``bokeh-autoload-element``: it is written into the script
ELEMENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

#: endpoints a logged-out user may reach (bokeh guards the index, pages, websocket,
#: metadata and autoload.js, and leaves BokehJS and static files public)
PUBLIC_ENDPOINTS = {"static", "extension_static", "app_static", "favicon", "healthz", "metrics", "login", "logout"}


def xsrf_secret() -> str | bytes:
    """The key XSRF tokens are signed with: ``--cookie-secret``, else the Flask ``SECRET_KEY``."""
    secret = current_state().settings.cookie_secret or current_app.config.get("SECRET_KEY")
    if not secret:
        raise RuntimeError("--enable-xsrf-cookies needs --cookie-secret (or a Flask SECRET_KEY)")
    return t.cast("str | bytes", secret)


def check_xsrf() -> None:
    """With ``xsrf_cookies`` on, unsafe methods must echo the ``_xsrf`` cookie's token."""
    from . import xsrf

    if not current_state().settings.xsrf_cookies:
        return
    sent = request.form.get(xsrf.FIELD_NAME) or next(
        (request.headers[h] for h in xsrf.HEADERS if h in request.headers), None)
    if not xsrf.request_passes(xsrf_secret(), request.method, request.cookies.get(xsrf.COOKIE_NAME), sent):
        log.warning("Refused %s %s: missing or wrong XSRF token", request.method, request.path)
        abort(403, "XSRF cookie does not match the _xsrf argument or X-XSRFToken header")


def set_xsrf_cookie(response: Response) -> Response:
    """Blueprint ``after_request``: store a token handed out during this request."""
    from . import xsrf

    token = g.get("bokeh_xsrf_token")
    if token is not None and request.cookies.get(xsrf.COOKIE_NAME) != token:
        response.set_cookie(xsrf.COOKIE_NAME, token, samesite="Lax")
    return response


def guard() -> Response | None:
    """Blueprint ``before_request``: XSRF, then refuse users the auth module does not know.

    Runs before any view, so a websocket is refused with 403 before its upgrade;
    a page request is redirected to the login URL.
    """
    state = current_state()
    check_xsrf()
    provider = state.auth
    endpoint = (request.endpoint or "").rsplit(".", 1)[-1]
    if provider is None or endpoint in PUBLIC_ENDPOINTS:
        return None
    from .tornado_shim import RequestHandlerShim

    handler = RequestHandlerShim(request, state.settings.cookie_secret)
    try:
        user = provider.user(handler, state.scheduler.finish)
    except Exception:
        log.exception("The auth module's get_user failed; treating the request as not logged in")
        user = None
    if user is not None:
        g.bokeh_user = user
        return None
    if endpoint == "ws" or request.method not in ("GET", "HEAD"):
        log.warning("Refused %s %s: not authenticated", request.method, request.path)
        abort(403, "not authenticated")
    location = provider.login_location(handler)
    if provider.urls_under_blueprint and location.startswith("/") and not location.startswith("//"):
        location = base_url(state) + location
    separator = "&" if "?" in location else "?"
    return redirect(f"{location}{separator}{urlencode({'next': request.full_path.rstrip('?')})}")


def base_url(state: BokehState) -> str:
    """Where the blueprint is mounted, seen from the browser (``SCRIPT_NAME`` included)."""
    return request.script_root + state.url_prefix


@dataclass
class _PageSession:
    """What bokeh's page renderers read of a session: this request's token and the document."""

    id: str
    token: str
    document: t.Any


def session_for_request(state: BokehState, app_path: str, build: bool = True) -> _PageSession:
    """Find or build the session a page request names, with a token for this request.

    With ``build=False`` only the id and token are made: the websocket's process
    builds the document (see :func:`document_page`).
    """
    context = state.context_for(app_path)
    settings = state.settings
    arguments = {key: request.args.get(key, "") for key in ("bokeh-token", "bokeh-session-id") if key in request.args}
    try:
        session_id, token = requested_session(arguments, request.headers, settings)
        info = replace(RequestInfo.from_flask(request), user=g.get("bokeh_user"))
        builds_here = build or context.has_session(session_id)
        if token is None:
            check_session_id(session_id, settings)
            extra = dict(context.application.process_request(info) or {})
            if builds_here and state.relay is not None:
                extra[WORKER_KEY] = state.relay.pid  # a websocket landing elsewhere is relayed here
            token = token_for(session_id, info, settings, extra)
        else:
            check_page_token(token, settings)
        if not builds_here:
            return _PageSession(session_id, token, None)
        session: ServerSession = context.create_session_if_needed(session_id, info, token)
    except PermissionDenied as denied:
        log.warning("Refused %s %s: %s", request.method, request.path, denied.reason)
        abort(denied.status, denied.reason)
    except SessionError as error:
        abort(500, str(error))
    return _PageSession(session.id, token, session.document)


def document_page(app_path: str) -> Response:
    """``GET /<app>/``: a full HTML page for a new (or named) session.

    The same page as bokeh's ``server_html_page_for_session``, with the script
    bundle (identical for every page) computed once per URL root. With lazy
    documents (the default when several processes serve, where the websocket
    may land in another process and would build the document a second time)
    the page carries only the token and one element BokehJS renders the whole
    document into; the title arrives with the document. Apps with their own
    page template (a directory app's ``templates/index.html``) always build here;
    with several processes the token then names this worker, and a websocket
    that lands in another one is relayed here (:mod:`bokeh_flask.relay`).
    """
    from bokeh.embed.elements import html_page_for_render_items
    from bokeh.embed.util import RenderItem

    state = current_state()
    lazy = _lazy_documents(state) and not _has_page_template(state.context_for(app_path).application)
    page_session = session_for_request(state, app_path, build=not lazy)
    document = page_session.document
    if document is None:
        element_id = f"bk-{page_session.id[:12]}"
        item = RenderItem(token=page_session.token, elementid=element_id, use_for_title=True)
        html = html_page_for_render_items(page_bundle(base_url(state)), {}, [item], "Bokeh Application",
                                          template=lazy_page_template(),
                                          template_variables={"lazy_element_id": element_id})
        return Response(html, mimetype="text/html")
    item = RenderItem(token=page_session.token, roots=document.roots, use_for_title=True)
    html = html_page_for_render_items(page_bundle(base_url(state)), {}, [item], document.title,
                                      template=document.template,
                                      template_variables=document.template_variables or {})
    return Response(html, mimetype="text/html")


#: the page of a lazily built document: one element the whole document renders into
LAZY_PAGE_TEMPLATE = '{% block contents %}<div id="{{ lazy_element_id }}"></div>{% endblock %}'


@functools.lru_cache(maxsize=1)
def lazy_page_template() -> t.Any:
    """:data:`LAZY_PAGE_TEMPLATE` compiled once (bokeh would compile a string template on every page)."""
    from bokeh.core.templates import get_env

    return get_env().from_string("{% extends base %}\n" + LAZY_PAGE_TEMPLATE)


def _lazy_documents(state: BokehState) -> bool:
    setting = state.settings.lazy_documents
    if setting is not None:
        return setting
    return state.settings.num_procs != 1 or ProcessInfo.sibling_processes > 1


def _has_page_template(application: t.Any) -> bool:
    return any(getattr(handler, "_template", None) is not None for handler in application.handlers)


def autoload_js(app_path: str) -> Response:
    """``GET /<app>/autoload.js``: script that loads BokehJS and renders into an element."""
    from bokeh.core.templates import AUTOLOAD_JS
    from bokeh.embed.bundle import Script, bundle_for_objs_and_resources
    from bokeh.embed.elements import script_for_render_items
    from bokeh.embed.util import RenderItem

    if request.method == "OPTIONS":
        return autoload_preflight()
    state = current_state()
    element_id = request.args.get("bokeh-autoload-element")
    if not element_id:
        abort(400, "No bokeh-autoload-element query parameter")
    if not ELEMENT_ID.fullmatch(element_id):
        abort(400, "bokeh-autoload-element must be an HTML id of letters, digits, '-', '_', '.' or ':'")
    # the script needs only the token: with lazy documents the websocket's process builds it
    page_session = session_for_request(state, app_path, build=not _lazy_documents(state))
    app_url = request.args.get("bokeh-app-path", "/")
    absolute_url = request.args.get("bokeh-absolute-url")
    if absolute_url:
        parsed = urlparse(absolute_url)
        server_root = f"{parsed.scheme}://{parsed.netloc}{base_url(state)}"
    else:
        server_root = base_url(state)
    resources = resources_for(server_root) if request.args.get("resources", "default") != "none" else None
    bundle = bundle_for_objs_and_resources(None, resources)
    render_items = [RenderItem(token=page_session.token, elementid=element_id, use_for_title=False)]
    bundle.add(Script(script_for_render_items({}, render_items, app_path=app_url, absolute_url=absolute_url)))
    response = Response(AUTOLOAD_JS.render(bundle=bundle, elementid=element_id),
                        mimetype="application/javascript")
    _add_cors_headers(state, response)
    return response


def autoload_preflight() -> Response:
    """``OPTIONS /<app>/autoload.js``: the CORS preflight browsers send first."""
    response = Response(status=200)
    _add_cors_headers(current_state(), response)
    response.headers["Access-Control-Allow-Methods"] = "PUT, GET, OPTIONS"
    return response


def _add_cors_headers(state: BokehState, response: Response) -> None:
    """Anyone may load autoload.js; credentials are allowed only for allowlisted origins.

    bokeh 3.9 reflects any ``Origin`` with credentials (bokeh#15104); this server
    reflects only origins its websocket would accept.
    """
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Headers"] = "*"
    origin = request.headers.get("Origin")
    allowed = env_websocket_origins() or state.settings.websocket_origins()
    if origin and (same_origin_allowed(state, origin) or origin_allowed(origin, allowed)):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"


def metadata(app_path: str) -> Response:
    """``GET /<app>/metadata``: the application's metadata as JSON."""
    state = current_state()
    data = state.context_for(app_path).application.metadata
    if callable(data):
        data = data()
    return jsonify({"url": base_url(state) + (app_path if app_path != "/" else ""), "data": data or {}})


def app_static(app_path: str, filename: str) -> Response:
    """``GET /<app>/static/<file>``: a directory app's own ``static/`` folder."""
    state = current_state()
    static_dir = state.context_for(app_path).application.static_path
    if static_dir:
        path = safe_join(static_dir, filename)
        if path is not None and path.is_file():
            return send_file(path, conditional=True)
    if app_path == "/":
        return bokehjs_static(filename)  # the root app shares /static/ with BokehJS
    abort(404)


def bokehjs_static(filename: str) -> Response:
    """``GET /static/<file>``: BokehJS, cached for a year when the URL is versioned."""
    path = safe_join(bokehjs_dir(), filename)
    if path is None or not path.is_file():
        abort(404)
    max_age = ONE_YEAR_SECONDS if "v" in request.args else None
    return send_file(path, conditional=True, max_age=max_age)


def extension_static(name: str, filename: str) -> Response:
    """``GET /static/extensions/<name>/<file>``: assets of installed Bokeh extensions."""
    root = extension_dirs().get(name)
    path = safe_join(root, filename) if root is not None else None
    if path is None or not path.is_file():
        abort(404)
    return send_file(path, conditional=True)


def favicon() -> Response:
    """``GET /favicon.ico``: bokeh's icon, the ``ico_path`` file, or 404 for ``none``."""
    path = icon_path(current_state().settings.ico_path)
    if path is None:
        abort(404)
    return send_file(path, mimetype="image/x-icon", conditional=True)


def index() -> Response | str:
    """``GET /``: redirect to the only app, or list the apps."""
    state = current_state()
    if not state.settings.use_index:
        abort(404)
    paths = state.app_paths
    prefix = base_url(state)
    if state.settings.redirect_root and len(paths) == 1:
        return redirect(prefix + paths[0])
    if state.settings.index:
        with open(state.settings.index, encoding="utf-8") as file:
            return Template(file.read()).render(prefix=prefix, items=paths)
    return render_template("bokeh/index.html", prefix=prefix, items=paths)


def healthz() -> Response:
    """``GET /healthz``: liveness and counts, without building any document."""
    state = current_state()
    return jsonify({
        "status": "ok",
        "sessions": {route: len(context.sessions) for route, context in sorted(state.contexts.items())},
        "connections": len(state.connections),
    })


def metrics() -> Response:
    """``GET /metrics``: sessions, connections, messages, bytes and timings per app (Prometheus)."""
    from .metrics import prometheus_text

    state = current_state()
    stats = {route: context.stats for route, context in state.contexts.items()}
    connections: dict[str, float] = {route: 0 for route in state.contexts}
    for connection in list(state.connections):
        for route, context in state.contexts.items():
            if context.has_session(connection.session.id):
                connections[route] += 1
    gauges = {"sessions": {route: len(c.sessions) for route, c in state.contexts.items()},
              "connections": connections}
    return Response(prometheus_text(stats, gauges), mimetype="text/plain; version=0.0.4")
