"""The pages of the apps: ``/<app>/``, ``/<app>/autoload.js``, ``/<app>/metadata`` and the ``/`` index."""
from __future__ import annotations

import functools
import logging
import re
import typing as t
from dataclasses import dataclass, replace
from urllib.parse import urljoin, urlparse

from bokeh.core.templates import AUTOLOAD_JS, get_env
from bokeh.embed.bundle import Script, bundle_for_objs_and_resources
from bokeh.embed.elements import html_page_for_render_items, script_for_render_items
from bokeh.embed.util import RenderItem
from flask import Response, abort, g, jsonify, redirect, render_template, request
from jinja2 import Template

from ..core.errors import PermissionDenied, SessionError
from ..core.requests import WORKER_KEY
from ..core.state import BokehState, ProcessInfo
from ..core.tokens import check_page_token, check_session_id, requested_session, token_for
from .cors import add_cors_headers, autoload_preflight
from .current import base_url, current_state
from .requests import request_info
from .resources import page_bundle, resources_for

log = logging.getLogger(__name__)

#: what autoload.js accepts as ``bokeh-autoload-element``: it is written into the script
ELEMENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
#: the page of a lazily built document: one element the whole document renders into
LAZY_PAGE_TEMPLATE = '{% block contents %}<div id="{{ lazy_element_id }}"></div>{% endblock %}'


@dataclass
class PageSession:
    """What bokeh's page renderers read of a session: this request's token and the document."""

    id: str
    token: str
    document: t.Any


def session_for_request(state: BokehState, app_path: str, build: bool = True) -> PageSession:
    """Find or build the session a page request names, with a token for this request.

    With ``build=False`` only the id and token are made: the websocket's process
    builds the document (see :func:`document_page`).
    """
    context = state.context_for(app_path)
    settings = state.settings
    arguments = {key: request.args.get(key, "") for key in ("bokeh-token", "bokeh-session-id") if key in request.args}
    try:
        session_id, token = requested_session(arguments, request.headers, settings)
        info = replace(request_info(request), user=g.get("bokeh_user"))
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
            return PageSession(session_id, token, None)
        session = context.create_session_if_needed(session_id, info, token)
    except PermissionDenied as denied:
        log.warning("Refused %s %s: %s", request.method, request.path, denied.reason)
        abort(denied.status, denied.reason)
    except SessionError as error:
        abort(500, str(error))
    return PageSession(session.id, token, session.document)


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
    that lands in another one is relayed there (:mod:`bokeh_flask.runtime.relay`).
    """
    state = current_state()
    lazy = lazy_documents(state) and not _has_page_template(state.context_for(app_path).application)
    page_session = session_for_request(state, app_path, build=not lazy)
    document = page_session.document
    if document is None:
        element_id = f"bk-{page_session.id[:12]}"
        item = RenderItem(token=page_session.token, elementid=element_id, use_for_title=True)
        html = html_page_for_render_items(page_bundle(resources_root(state)), {}, [item], "Bokeh Application",
                                          template=lazy_page_template(),
                                          template_variables={"lazy_element_id": element_id})
        return Response(html, mimetype="text/html")
    item = RenderItem(token=page_session.token, roots=document.roots, use_for_title=True)
    html = html_page_for_render_items(page_bundle(resources_root(state)), {}, [item], document.title,
                                      template=document.template,
                                      template_variables=document.template_variables or {})
    return Response(html, mimetype="text/html")


def resources_root(state: BokehState) -> str:
    """Where pages load BokehJS from: ``absolute_url`` joined with the prefix, as bokeh's
    ``BokehTornado.resources(True)`` does, else this server's own base URL."""
    absolute = state.settings.absolute_url
    return urljoin(absolute, state.url_prefix) if absolute else base_url(state)


@functools.lru_cache(maxsize=1)
def lazy_page_template() -> t.Any:
    """:data:`LAZY_PAGE_TEMPLATE` compiled once (bokeh would compile a string template on every page)."""
    return get_env().from_string("{% extends base %}\n" + LAZY_PAGE_TEMPLATE)


def lazy_documents(state: BokehState) -> bool:
    """Whether pages leave building the document to the websocket's process."""
    setting = state.settings.lazy_documents
    if setting is not None:
        return setting
    return state.settings.num_procs != 1 or ProcessInfo.sibling_processes > 1


def _has_page_template(application: t.Any) -> bool:
    return any(getattr(handler, "_template", None) is not None for handler in application.handlers)


def autoload_js(app_path: str) -> Response:
    """``GET /<app>/autoload.js``: script that loads BokehJS and renders into an element."""
    if request.method == "OPTIONS":
        return autoload_preflight()
    state = current_state()
    element_id = checked_element_id()
    # the script needs only the token: with lazy documents the websocket's process builds it
    page_session = session_for_request(state, app_path, build=not lazy_documents(state))
    return autoload_response(state, page_session.token, element_id)


def checked_element_id() -> str:
    """The ``bokeh-autoload-element`` argument, or a 400 naming what is wrong with it."""
    element_id = request.args.get("bokeh-autoload-element")
    if not element_id:
        abort(400, "No bokeh-autoload-element query parameter")
    if not ELEMENT_ID.fullmatch(element_id):
        abort(400, "bokeh-autoload-element must be an HTML id of letters, digits, '-', '_', '.' or ':'")
    return element_id


def autoload_response(state: BokehState, token: str, element_id: str) -> Response:
    """The autoload.js script that renders the session ``token`` names into ``element_id``."""
    app_url = request.args.get("bokeh-app-path", "/")
    absolute_url = request.args.get("bokeh-absolute-url")
    if absolute_url:
        parsed = urlparse(absolute_url)
        server_root = f"{parsed.scheme}://{parsed.netloc}{base_url(state)}"
    else:
        server_root = base_url(state)
    resources = resources_for(server_root) if request.args.get("resources", "default") != "none" else None
    bundle = bundle_for_objs_and_resources(None, resources)
    render_items = [RenderItem(token=token, elementid=element_id, use_for_title=False)]
    bundle.add(Script(script_for_render_items({}, render_items, app_path=app_url, absolute_url=absolute_url)))
    response = Response(AUTOLOAD_JS.render(bundle=bundle, elementid=element_id),
                        mimetype="application/javascript")
    add_cors_headers(state, response)
    return response


def metadata(app_path: str) -> Response:
    """``GET /<app>/metadata``: the application's metadata as JSON."""
    state = current_state()
    data = state.context_for(app_path).application.metadata
    if callable(data):
        data = data()
    return jsonify({"url": base_url(state) + (app_path if app_path != "/" else ""), "data": data or {}})


def index() -> Response | str:
    """``GET /``: redirect to the only app, or list the apps."""
    state = current_state()
    if not state.settings.use_index:
        abort(404)
    paths = state.app_paths
    prefix = base_url(state)
    if not paths and state.publications is not None:
        return redirect(prefix + "/bokeh/")  # a publishing server without apps
    if state.settings.redirect_root and len(paths) == 1:
        return redirect(prefix + paths[0])
    if state.settings.index:
        with open(state.settings.index, encoding="utf-8") as file:
            return Template(file.read()).render(prefix=prefix, items=paths)
    return render_template("bokeh/index.html", prefix=prefix, items=paths)
