"""The public objects, assembled: ``BokehFlask`` with its runtime, and the Flask app factories.

:class:`BokehFlask` is the web layer's extension with this package's runtime
(gevent, or threads under ``flask run``) filled in; :func:`create_app` and
:func:`create_app_from_env` make a Flask app whose only job is to serve bokeh
apps, for ``Server``, gunicorn, ``wsgi.py`` and ``flask run``.
"""
from __future__ import annotations

import os
import typing as t

from flask import Flask, current_app, request

from ..core.errors import ConfigError
from ..core.ports import Runtime
from ..core.publications import Publications
from ..core.scheduling import Scheduler
from ..core.settings import ServerSettings
from ..web import extension
from ..web.static import send_favicon
from .publishing import open_publications
from .siblings import SIBLINGS
from .transport import SimpleWebSocketRuntime

APPS_ENV = "BOKEH_FLASK_APPS"
ARGS_ENV = "BOKEH_FLASK_ARGS"
PREFIX_ENV = "BOKEH_FLASK_PREFIX"


class BokehFlask(extension.BokehFlask):
    """Serve bokeh applications from a Flask app (see :class:`bokeh_flask.web.extension.BokehFlask`).

    Websockets and timers run on gevent when it has patched the standard
    library, else on OS threads.
    """

    def _make_blueprint(self, name: str) -> t.Any:
        blueprint = super()._make_blueprint(name)
        blueprint.before_app_request(_join_gunicorn_siblings)  # before BokehFlask(app=...) registers it
        return blueprint

    def default_runtime(self) -> Runtime:
        return SimpleWebSocketRuntime()

    def make_publications(self, settings: ServerSettings, scheduler: Scheduler) -> Publications:
        return open_publications(settings, scheduler, self._store)


def _join_gunicorn_siblings() -> None:
    """Under ``gunicorn -k gevent -w N``: find the sibling workers on the first request (:mod:`.siblings`)."""
    if not SIBLINGS.checked:
        SIBLINGS.join(request.environ, current_app._get_current_object())  # type: ignore[attr-defined]


def create_app(applications: t.Any = None, *, argv: t.Sequence[str] | None = None,
               import_name: str = "bokeh_flask.app", **settings: t.Any) -> Flask:
    """A Flask app whose only job is to serve ``applications`` like ``bokeh serve``.

    ``settings`` are :class:`~bokeh_flask.core.settings.ServerSettings` fields; the
    ``prefix`` setting becomes the blueprint's URL prefix.
    """
    app = Flask(import_name, static_folder=None)  # /static/ is BokehJS
    bk = BokehFlask(applications, argv=argv, **settings)
    bk.init_app(app, url_prefix=settings.get("prefix") or None)
    if bk.state(app).settings.max_request_body_bytes:
        app.config["MAX_CONTENT_LENGTH"] = bk.state(app).settings.max_request_body_bytes
    if bk.state(app).url_prefix:
        # browsers ask the site root for the icon, whatever the prefix: bokeh serve answers there too
        app.add_url_rule("/favicon.ico", "favicon", lambda: send_favicon(bk.state(app).settings.ico_path))
    return app


def create_app_from_env(environ: t.Mapping[str, str] | None = None, **settings: t.Any) -> Flask:
    """``create_app`` configured by environment variables (for ``wsgi.py`` and gunicorn).

    ``BOKEH_FLASK_APPS``: paths of scripts, notebooks or directories, separated
    by ``os.pathsep`` (``:`` on Linux); none serves an empty app at ``/``.
    ``BOKEH_FLASK_ARGS``: arguments the apps see in ``sys.argv`` (split on spaces).
    ``BOKEH_FLASK_PREFIX``: URL prefix. Publishing: ``BOKEH_FLASK_PUBLISHING=yes``,
    ``BOKEH_FLASK_BACKEND``, ``BOKEH_FLASK_DATA_DIRECTORY``, ``BOKEH_FLASK_REDIS_URL``,
    ``BOKEH_FLASK_MULTI_USER`` ... (:data:`PUBLISHING_ENV`). Other settings come from bokeh's own
    variables (``BOKEH_ALLOW_WS_ORIGIN``, ``BOKEH_SECRET_KEY`` ...).
    """
    environ = os.environ if environ is None else environ
    paths = [p for p in environ.get(APPS_ENV, "").split(os.pathsep) if p.strip()]
    argv = environ.get(ARGS_ENV, "").split() or None
    if environ.get(PREFIX_ENV):
        settings.setdefault("prefix", environ[PREFIX_ENV])
    for name, convert in PUBLISHING_ENV.items():
        value = environ.get(f"BOKEH_FLASK_{name.upper()}")
        if value is not None and value.strip():
            settings.setdefault(name, convert(value.strip()))
    publishing_only = not paths and settings.get("publishing")
    return create_app({} if publishing_only else (paths or None), argv=argv, **settings)


def _yes(value: str) -> bool:
    if value.lower() not in ("1", "yes", "true", "on", "0", "no", "false", "off"):
        raise ConfigError(f"expected yes/no, true/false, on/off or 1/0, got {value!r}")
    return value.lower() in ("1", "yes", "true", "on")


#: publishing settings ``create_app_from_env`` reads from ``BOKEH_FLASK_<NAME>`` (docs/publishing.md)
PUBLISHING_ENV: dict[str, t.Callable[[str], t.Any]] = {
    "publishing": _yes, "backend": str, "data_directory": str, "redis_url": str, "redis_port": int,
    "start_redis": _yes, "multi_user": _yes, "open_registration": _yes, "max_document_bytes": int,
}
