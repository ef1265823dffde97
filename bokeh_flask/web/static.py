"""Static files: BokehJS, extensions' assets, a directory app's ``static/`` folder, the favicon."""
from __future__ import annotations

from pathlib import Path

from flask import Response, abort, request, send_file
from werkzeug.security import safe_join

from .current import current_state
from .resources import ONE_YEAR_SECONDS, bokehjs_dir, extension_dirs, icon_path


def _existing_file(root: str | Path | None, filename: str) -> str:
    """``root/filename`` if it stays inside ``root`` and is a file, else a 404."""
    path = safe_join(str(root), filename) if root is not None else None
    if path is None or not Path(path).is_file():
        abort(404)
    return path


def app_static(app_path: str, filename: str) -> Response:
    """``GET /<app>/static/<file>``: a directory app's own ``static/`` folder."""
    static_dir = current_state().context_for(app_path).application.static_path
    if app_path == "/" and not (static_dir and _is_file(static_dir, filename)):
        return bokehjs_static(filename)  # the root app shares /static/ with BokehJS
    return send_file(_existing_file(static_dir, filename), conditional=True)


def _is_file(root: str, filename: str) -> bool:
    path = safe_join(root, filename)
    return path is not None and Path(path).is_file()


def bokehjs_static(filename: str) -> Response:
    """``GET /static/<file>``: BokehJS, cached for a year when the URL is versioned."""
    path = _existing_file(bokehjs_dir(), filename)
    max_age = ONE_YEAR_SECONDS if "v" in request.args else None
    return send_file(path, conditional=True, max_age=max_age)


def extension_static(name: str, filename: str) -> Response:
    """``GET /static/extensions/<name>/<file>``: assets of installed Bokeh extensions."""
    return send_file(_existing_file(extension_dirs().get(name), filename), conditional=True)


def favicon() -> Response:
    """``GET /favicon.ico``: bokeh's icon, the ``ico_path`` file, or 404 for ``none``."""
    return send_favicon(current_state().settings.ico_path)


def send_favicon(ico_path: str | None) -> Response:
    """The favicon response for an ``ico_path`` setting (also served at the site root, see ``create_app``)."""
    path = icon_path(ico_path)
    if path is None:
        abort(404)
    return send_file(path, mimetype="image/x-icon", conditional=True)
