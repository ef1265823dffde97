"""The state of the bokeh blueprint that is handling the current Flask request."""
from __future__ import annotations

from flask import current_app, request

from ..core.state import BokehState

#: key of ``app.extensions`` under which each registration's state is kept (by blueprint name)
EXTENSION_KEY = "bokeh"


def current_state() -> BokehState:
    """The :class:`BokehState` of the blueprint that is handling this request (started on first use)."""
    name = (request.blueprint or "").rsplit(".", 1)[-1]
    state: BokehState = current_app.extensions[EXTENSION_KEY][name]
    state.start()
    return state


def base_url(state: BokehState) -> str:
    """Where the blueprint is mounted, seen from the browser (``SCRIPT_NAME`` included)."""
    return request.script_root + state.url_prefix
