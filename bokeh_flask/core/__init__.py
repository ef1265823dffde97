"""The server without I/O: settings, apps, tokens, sessions, the bokeh protocol, scheduling.

Imports bokeh and the standard library only, never Flask, werkzeug, gevent,
gunicorn or simple-websocket (an import-linter contract checks it). Whatever it
needs of the layers above it is named by a Protocol in :mod:`.ports`.
"""
