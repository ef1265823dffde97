"""What runs the server: gevent scheduling and websockets, the WSGI server, ``Server``,
gunicorn workers and the relay between them, reloading and the command line.

Imports the web layer and the core. Nothing is imported here, so the command
line can patch the standard library before Flask or bokeh are loaded.
"""
