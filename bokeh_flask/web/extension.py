"""``BokehFlask``: bokeh applications as a Flask blueprint (or extension).

Two equivalent ways to mount apps in any Flask site::

    bk = BokehFlask({"/sliders": "sliders.py"})
    bk.init_app(app, url_prefix="/dash")           # extension style
    # or
    app.register_blueprint(bk.blueprint, url_prefix="/dash")

Every registration gets its own :class:`~bokeh_flask.core.state.BokehState` in
``app.extensions["bokeh"][<blueprint name>]``; the extension never stores the
Flask app. The routes (all under the blueprint's prefix) are those of
``bokeh serve``: ``/<app>/``, ``/<app>/ws``, ``/<app>/autoload.js``,
``/<app>/metadata``, ``/<app>/static/...``, ``/static/...``,
``/static/extensions/...``, ``/favicon.ico`` and the ``/`` index.
"""
from __future__ import annotations

import logging
import typing as t

from bokeh.application import Application
from flask import Blueprint, Flask
from flask.blueprints import BlueprintSetupState
from tornado.web import RequestHandler

from ..core.auth import AuthProvider
from ..core.curdoc import install_context_local_curdoc
from ..core.errors import ConfigError
from ..core.limits import install_bounded_bytes_decoder
from ..core.loading import build_applications
from ..core.ports import Runtime
from ..core.scheduling import Scheduler
from ..core.settings import ServerSettings, normalise_prefix
from ..core.state import BokehState
from ..core.publications import Publications
from . import ops, pages, published, publishing_api, static, websocket
from .auth import load_auth_module, provider_from_bokeh, provider_from_callable
from .current import EXTENSION_KEY
from .guard import guard
from .proxies import XHeaders
from .tornado_handlers import TORNADO_ENDPOINT, TornadoHandlers, flask_rule, is_tornado_handler, pattern_converter
from .xsrf import set_xsrf_cookie, xsrf_form_html

log = logging.getLogger(__name__)


class BokehFlask:
    """Serve bokeh applications from a Flask app.

    :param applications: what ``bokeh serve`` or ``Server`` accept: paths,
        ``modify_doc`` functions, ``Application`` objects, or a mapping of
        routes to any of those.
    :param name: the blueprint name (change it to mount two sets of apps).
    :param settings: any :class:`~bokeh_flask.core.settings.ServerSettings` field,
        e.g. ``keep_alive_milliseconds=0`` or ``allow_websocket_origin=[...]``.
    :param auth_provider: a bokeh ``AuthProvider`` (as ``Server(auth_provider=...)`` takes)
    :param extra_patterns: ``[(r"/path", TornadoHandler[, kwargs])]``, served as bokeh serves them
    :param publishing_user: with publishing on, a callable returning the name of the site's logged-in
        user (or None): the Flask site's own login (flask-login ...) stands in for bokeh-flask's
    :param store: the document store for publishing (a :class:`~bokeh_flask.core.store.DocumentStore`);
        by default ``bokeh_flask.BokehFlask`` opens the one the ``backend`` setting names
    :param runtime: what runs the websockets and timers
        (:class:`~bokeh_flask.core.ports.Runtime`); ``bokeh_flask.BokehFlask``
        supplies gevent's (or threads' under ``flask run``) through
        :meth:`default_runtime`.
    """

    def __init__(self, applications: t.Any = None, *, app: Flask | None = None, name: str = "bokeh",
                 argv: t.Sequence[str] | None = None, scheduler: Scheduler | None = None,
                 authorize: t.Callable[[], t.Any] | None = None, login_url: str | None = None,
                 logout_url: str | None = None, runtime: Runtime | None = None,
                 auth_provider: t.Any = None, extra_patterns: t.Sequence[t.Sequence[t.Any]] = (),
                 publishing_user: t.Callable[[], t.Any] | None = None, store: t.Any = None,
                 **settings: t.Any) -> None:
        self.applications: dict[str, Application] = build_applications(applications, argv)
        self._overrides = settings
        if authorize is not None and auth_provider is not None:
            raise ConfigError("Give authorize= or auth_provider=, not both")
        self._authorize = (provider_from_callable(authorize, login_url, logout_url) if authorize else
                           provider_from_bokeh(auth_provider) if auth_provider is not None else None)
        self._extra_patterns = [_pattern(entry) for entry in extra_patterns]
        self._scheduler = scheduler
        self._runtime = runtime
        self._publishing_user = publishing_user
        self._store = store
        self.blueprint = self._make_blueprint(name)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, url_prefix: str | None = None) -> None:
        """Register the blueprint on ``app`` (under ``url_prefix`` if given)."""
        app.register_blueprint(self.blueprint, url_prefix=normalise_prefix(url_prefix) or None)

    def default_runtime(self) -> Runtime:
        """The runtime used when none is given; ``bokeh_flask.BokehFlask`` supplies one."""
        raise ConfigError("No websocket runtime: use bokeh_flask.BokehFlask (gevent), or pass runtime=")

    def make_publications(self, settings: ServerSettings, scheduler: Scheduler) -> Publications:
        """The publications of a registration with publishing on (``bokeh_flask.BokehFlask`` opens the store
        and change feed the settings name; here only a ``store=`` given is used)."""
        if self._store is None:
            raise ConfigError("Publishing needs a store: pass store= or use bokeh_flask.BokehFlask")
        return Publications(self._store, scheduler)

    def state(self, app: Flask) -> BokehState:
        """The state this extension keeps on ``app``."""
        return t.cast(BokehState, app.extensions[EXTENSION_KEY][self.blueprint.name])

    # -- blueprint ----------------------------------------------------------

    def _make_blueprint(self, name: str) -> Blueprint:
        bp = Blueprint(name, __name__, template_folder="templates")
        bp.record(self._on_register)
        bp.before_request(guard)
        bp.after_request(set_xsrf_cookie)
        bp.app_context_processor(_template_helpers)
        for route in sorted(self.applications, key=len, reverse=True):
            _add_app_rules(bp, route, self.applications[route])
        if "/" not in self.applications:
            bp.add_url_rule("/", "index", pages.index)
        bp.add_url_rule("/favicon.ico", "favicon", static.favicon)
        for name, view in (("healthz", ops.healthz), ("metrics", ops.metrics)):
            bp.add_url_rule(f"{ops.OPS_PREFIX}/{name}", name, view)
            if not any(route.strip("/").split("/")[0] == name for route in self.applications):
                bp.add_url_rule(f"/{name}", f"{name}_short", view)  # the short name, unless an app owns it
        bp.add_url_rule("/static/extensions/<name>/<path:filename>", "extension_static", static.extension_static)
        if "/" not in self.applications:
            bp.add_url_rule("/static/<path:filename>", "static", static.bokehjs_static)
        if not any(route.strip("/").split("/")[0] == "bokeh" for route in self.applications):
            _add_publishing_rules(bp)
        return bp

    def _on_register(self, setup: BlueprintSetupState) -> None:
        app = setup.app
        states = app.extensions.setdefault(EXTENSION_KEY, {})
        if setup.name in states:
            return  # the same blueprint registered again under its own name
        settings = ServerSettings.resolve(self._overrides, app.config)
        url_prefix = normalise_prefix(setup.url_prefix)
        install_context_local_curdoc()
        install_bounded_bytes_decoder()
        runtime = self._runtime or self.default_runtime()
        scheduler = self._scheduler or runtime.make_scheduler()
        auth = self._authorize or (load_auth_module(settings.auth_module) if settings.auth_module else None)
        state = states[setup.name] = BokehState(self.applications, settings, scheduler, url_prefix, auth,
                                                runtime=runtime)
        if settings.publishing or self._store is not None:
            state.publications = self.make_publications(settings, scheduler)
            state.publications_user_loader = self._publishing_user
        tornado_routes = list(self._extra_patterns)
        if auth is not None:
            tornado_routes += _mount_auth_views(setup, auth)
        if tornado_routes:
            _mount_tornado_handlers(setup, tornado_routes, settings, auth, scheduler, url_prefix)
        if settings.use_xheaders and not isinstance(app.wsgi_app, XHeaders):
            app.wsgi_app = XHeaders(app.wsgi_app)  # type: ignore[method-assign]
        log.debug("bokeh blueprint %r registered at %r serving %s", setup.name, url_prefix or "/",
                  ", ".join(sorted(self.applications)))


def _template_helpers() -> dict[str, t.Any]:
    """``xsrf_form_html()`` in the site's templates, as Tornado offers it."""
    return {"xsrf_form_html": xsrf_form_html}


def _mount_auth_views(setup: BlueprintSetupState, auth: AuthProvider) -> list[tuple[str, type, dict[str, t.Any]]]:
    """An auth module's ``LoginHandler`` / ``LogoutHandler`` at its relative URLs; returns the Tornado ones."""
    tornado_routes = []
    for url, view, name in ((auth.login_url, auth.login_view, "login"), (auth.logout_url, auth.logout_view, "logout")):
        if view is None or not url:
            continue
        if is_tornado_handler(view):
            tornado_routes.append((url, t.cast(type, view), {"endpoint": name}))
        else:
            setup.add_url_rule(url, name, view, methods=["GET", "POST"])
    return tornado_routes


def _pattern(entry: t.Sequence[t.Any]) -> tuple[str, type, dict[str, t.Any]]:
    """One ``extra_patterns`` entry, ``(pattern, handler)`` or ``(pattern, handler, kwargs)``."""
    if not 2 <= len(entry) <= 3 or not isinstance(entry[0], str) or not is_tornado_handler(entry[1]):
        raise ConfigError(f"extra_patterns entries are (r'/path', RequestHandlerClass[, kwargs]), got {entry!r}")
    return entry[0], entry[1], dict(entry[2]) if len(entry) == 3 else {}


def _mount_tornado_handlers(setup: BlueprintSetupState, routes: list[tuple[str, type, dict[str, t.Any]]],
                            settings: ServerSettings, auth: AuthProvider | None, scheduler: Scheduler,
                            url_prefix: str) -> None:
    """Tornado handlers at their patterns, under the blueprint's prefix (see :mod:`.tornado_handlers`)."""
    patterns = [(p, h, {k: v for k, v in kwargs.items() if k != "endpoint"}) for p, h, kwargs in routes]
    login_url = auth.login_url if auth is not None and auth.login_url else None
    handlers = TornadoHandlers(patterns, scheduler.finish, prefix=url_prefix, cookie_secret=settings.cookie_secret,
                               xsrf_cookies=settings.xsrf_cookies or None,
                               login_url=(url_prefix + login_url) if login_url else None)
    for index, (pattern, _, kwargs) in enumerate(routes):
        converter = f"tornado_{setup.name}_{index}"
        rule = flask_rule(pattern, converter)
        if rule is not None and "<" in rule:
            setup.app.url_map.converters[converter] = pattern_converter(pattern)
        setup.add_url_rule(rule, kwargs.get("endpoint", f"{TORNADO_ENDPOINT}{index}"), handlers.view,
                           methods=list(RequestHandler.SUPPORTED_METHODS))


def _add_publishing_rules(bp: Blueprint) -> None:
    """The publishing routes under ``/bokeh/`` (they answer 404 while publishing is off)."""
    api = publishing_api
    rules: list[tuple[str, str, t.Callable[..., t.Any], list[str]]] = [
        ("/bokeh/", "pub_index", api.index, ["GET"]),
        ("/bokeh/login", "pub_login", api.login_page, ["GET", "POST"]),
        ("/bokeh/register", "pub_register", api.register_page, ["GET", "POST"]),
        ("/bokeh/logout", "pub_logout", api.logout_page, ["POST"]),
        ("/bokeh/keys", "pub_keys", api.new_key_page, ["POST"]),
        ("/bokeh/api/keys", "pub_api_keys", api.api_new_key, ["POST"]),
        ("/bokeh/doc/<docid>", "pub_doc", published.document_page, ["GET"]),
        ("/bokeh/doc/<docid>/<plotid>", "pub_plot", published.document_page, ["GET"]),
        ("/bokeh/doc/<docid>/autoload.js", "pub_autoload", published.document_autoload, ["GET"]),
        ("/bokeh/api/register", "pub_api_register", api.api_register, ["POST"]),
        ("/bokeh/api/login", "pub_api_login", api.api_login, ["POST"]),
        ("/bokeh/api/logout", "pub_api_logout", api.api_logout, ["POST"]),
        ("/bokeh/api/whoami", "pub_api_whoami", api.api_whoami, ["GET"]),
        ("/bokeh/api/docs", "pub_api_docs", api.api_docs, ["GET"]),
        ("/bokeh/api/doc/<docid>", "pub_api_doc", api.api_doc, ["GET", "DELETE"]),
        ("/bokeh/api/doc/<docid>/publish", "pub_api_publish", api.api_publish, ["POST"]),
        ("/bokeh/api/doc/<docid>/unpublish", "pub_api_unpublish", api.api_unpublish, ["POST"]),
    ]
    for rule, endpoint, view, methods in rules:
        bp.add_url_rule(rule, endpoint, view, methods=methods)
    bp.add_url_rule("/bokeh/doc/<docid>/ws", "pub_ws", published.document_websocket, websocket=True)


def _add_app_rules(bp: Blueprint, route: str, application: Application) -> None:
    base = "" if route == "/" else route
    defaults = {"app_path": route}
    bp.add_url_rule(base + "/", "doc", pages.document_page, defaults=defaults, strict_slashes=False)
    bp.add_url_rule(base + "/ws", "ws", websocket.websocket, defaults=defaults, websocket=True)
    bp.add_url_rule(base + "/autoload.js", "autoload_js", pages.autoload_js, defaults=defaults,
                    methods=["GET", "OPTIONS"], provide_automatic_options=False)
    bp.add_url_rule(base + "/metadata", "metadata", pages.metadata, defaults=defaults)
    bp.add_url_rule(base + "/static/<path:filename>", "app_static", static.app_static, defaults=defaults)

