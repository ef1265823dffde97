"""Server lifecycle hooks for dir_app: each hook just logs a recognisable line.

Messages (tests look for these in the server's log output):
``dir_app: server loaded``, ``dir_app: server unloaded``,
``dir_app: session created <id>``, ``dir_app: session destroyed <id>``.
"""
import logging

log = logging.getLogger(__name__)
# `bokeh serve` only raises the "bokeh" logger to INFO; the root logger stays at
# WARNING, so an app module's logger must opt in to INFO explicitly.
log.setLevel(logging.INFO)


def on_server_loaded(server_context):
    log.info("dir_app: server loaded")


def on_server_unloaded(server_context):
    log.info("dir_app: server unloaded")


def on_session_created(session_context):
    log.info("dir_app: session created %s", session_context.id)


def on_session_destroyed(session_context):
    log.info("dir_app: session destroyed %s", session_context.id)
