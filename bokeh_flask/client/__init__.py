"""A Python client for bokeh-flask's publishing server (the original Flask Bokeh server's ``Session``).

Not part of the server's three layers: it imports the core (for the document-name rule,
the exceptions and the frame helper), bokeh, the standard library's ``urllib`` and
simple-websocket, and nothing in the server imports it.
"""
from __future__ import annotations

from .errors import PublishError
from .keys import load_key, normalize_root_url, remove_key, save_key
from .session import Session, websocket_url

__all__ = ["PublishError", "Session", "load_key", "normalize_root_url", "remove_key", "save_key", "websocket_url"]
