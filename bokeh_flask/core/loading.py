"""Turn what users pass (paths, functions, Applications) into routed Applications.

The same inputs ``bokeh serve`` and ``bokeh.server.server.Server`` take:

* nothing: an empty application at ``/``;
* a script, notebook or directory path: built by bokeh's own
  ``build_single_handler_application`` and routed at ``/<basename>``;
* a ``modify_doc(doc)`` function or an ``Application``: routed at ``/``;
* a mapping ``{route: any of the above}``.
"""
from __future__ import annotations

import glob as globbing
import logging
import os
import typing as t

from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.command.util import build_single_handler_application

from .errors import ApplicationLoadError

log = logging.getLogger(__name__)

AppLike = t.Union[Application, t.Callable[..., t.Any], str, os.PathLike]


def build_applications(applications: AppLike | t.Mapping[str, AppLike] | t.Sequence[AppLike] | None = None,
                       argv: t.Sequence[str] | None = None) -> dict[str, Application]:
    """``{route: Application}`` for any supported form of ``applications``."""
    if applications is None:
        return {"/": Application()}
    if isinstance(applications, t.Mapping):
        return {normalise_route(route): to_application(app, argv) for route, app in applications.items()}
    if isinstance(applications, (list, tuple)):
        return applications_from_paths([os.fspath(p) for p in applications], argv)
    if isinstance(applications, (str, os.PathLike)):
        return applications_from_paths([os.fspath(applications)], argv)
    return {"/": to_application(applications, argv)}


def to_application(app: AppLike, argv: t.Sequence[str] | None = None) -> Application:
    if isinstance(app, Application):
        return app
    if isinstance(app, (str, os.PathLike)):
        return application_from_path(os.fspath(app), argv)
    if callable(app):
        return Application(FunctionHandler(app))
    raise ApplicationLoadError(
        f"Cannot serve {app!r}: give a bokeh Application, a function taking a Document, "
        "or the path of a script, notebook or directory"
    )


def application_from_path(path: str, argv: t.Sequence[str] | None = None) -> Application:
    """An Application for a script (``.py``), notebook (``.ipynb``) or directory app."""
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(full):
        raise ApplicationLoadError(f"Path for Bokeh server application does not exist: {path}")
    if os.path.isfile(full) and not full.endswith((".py", ".ipynb")):
        raise ApplicationLoadError(f"Expected a .py script, a .ipynb notebook or a directory, got {path}")
    if os.path.isdir(full) and not any(
        os.path.exists(os.path.join(full, main)) for main in ("main.py", "main.ipynb")
    ):
        raise ApplicationLoadError(f"No 'main.py' or 'main.ipynb' in directory application {path}")
    try:
        return build_single_handler_application(full, list(argv or []))
    except Exception as error:
        raise ApplicationLoadError(f"Could not load application {path}: {error}") from error


def applications_from_paths(paths: t.Sequence[str], argv: t.Sequence[str] | None = None) -> dict[str, Application]:
    """Route each path at ``/<basename without extension>``, as ``bokeh serve`` does."""
    routes: dict[str, Application] = {}
    for path in paths:
        route = route_for_path(path)
        if route in routes:
            raise ApplicationLoadError(f"Two applications would be served at {route}: rename one of them")
        routes[route] = application_from_path(path, argv)
    return routes


def route_for_path(path: str) -> str:
    name = os.path.basename(os.path.normpath(path))
    stem, ext = os.path.splitext(name)
    return "/" + (stem if ext in (".py", ".ipynb") else name)


def expand_globs(patterns: t.Sequence[str]) -> list[str]:
    """``--glob``: expand each pattern, failing clearly when one matches nothing."""
    paths: list[str] = []
    for pattern in patterns:
        matches = sorted(globbing.glob(pattern))
        if not matches:
            raise ApplicationLoadError(f"--glob pattern {pattern!r} matched no files")
        paths.extend(matches)
    return paths


def normalise_route(route: str) -> str:
    route = "/" + route.strip("/")
    return route
