"""Where pages load BokehJS from, and the static files this server hands out.

BokehJS is served from bokeh's own package directory under ``/static/`` with
``?v=<md5>`` version strings (so browsers may cache for a year), assets of
installed Bokeh extensions under ``/static/extensions/<name>/``, and a
directory app's ``static/`` folder under ``/<app>/static/``.
"""
from __future__ import annotations

import functools
import hashlib
import typing as t
from pathlib import Path

from bokeh.core.has_props import HasProps
from bokeh.embed.bundle import bundle_for_objs_and_resources
from bokeh.embed.bundle import extension_dirs as bokeh_extension_dirs
from bokeh.resources import Resources
from bokeh.settings import settings as bokeh_settings
from werkzeug.security import safe_join

ONE_YEAR_SECONDS = 365 * 24 * 3600


@functools.lru_cache(maxsize=1)
def bokehjs_dir() -> Path:
    return Path(bokeh_settings.bokehjs_path())


def _file_version(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1024)
def static_version(relative_path: str) -> str | None:
    """The md5 of a BokehJS file (computed once), or ``None`` if it does not exist."""
    path = safe_join(str(bokehjs_dir()), relative_path)
    if path is None or not Path(path).is_file():
        return None
    return _file_version(path)


def versioned(relative_path: str) -> str:
    """``relative_path?v=<md5>`` (bokeh's ``path_versioner``); unchanged in dev mode."""
    if bokeh_settings.dev:
        return relative_path
    version = static_version(relative_path)
    return f"{relative_path}?v={version}" if version else relative_path


@functools.lru_cache(maxsize=64)
def resources_for(root_url: str) -> Resources:
    """Bokeh ``Resources`` pointing at this server's ``/static/`` under ``root_url``."""
    mode = bokeh_settings.resources(default="server")
    if mode in ("server", "server-dev"):
        if not root_url.endswith("/"):
            root_url += "/"
        return Resources(mode=mode, root_url=root_url, path_versioner=versioned)
    return Resources(mode=mode)


def extension_dirs() -> t.Mapping[str, Path]:
    """Asset folders of installed Bokeh extensions, by extension name."""
    return {name: Path(path) for name, path in bokeh_extension_dirs.items()}


def icon_path(setting: str | None) -> str | None:
    """The favicon file to serve: the setting, bokeh's icon by default, ``None`` for "none"."""
    path = setting or bokeh_settings.ico_path()
    return None if path == "none" else path


def page_bundle(root_url: str) -> t.Any:
    """The BokehJS script/style bundle of a server page.

    bokeh computes it for every page from every model class loaded so far, so an
    app's custom models (``__implementation__``) and extension packages are in its
    page even when another app's page came first. Computing it is costly: it is
    kept until another model class is loaded (an app's first document can load some).
    """
    return _page_bundle(root_url, len(HasProps.model_class_reverse_map))


@functools.lru_cache(maxsize=64)
def _page_bundle(root_url: str, models_loaded: int) -> t.Any:
    return bundle_for_objs_and_resources(None, resources_for(root_url))
