"""WSGI entry point: ``gunicorn -k gevent wsgi:app`` (or ``flask --app wsgi run``).

Which apps to serve comes from the environment (see
:func:`bokeh_flask.create_app_from_env`):

* ``BOKEH_FLASK_APPS``: scripts, notebooks or directories, ``:``-separated
  (default: the example apps in ``examples/``);
* ``BOKEH_FLASK_ARGS``: what the apps see in ``sys.argv``;
* ``BOKEH_FLASK_PREFIX``: a URL prefix;
* ``BOKEH_ALLOW_WS_ORIGIN``: websocket origins (comma-separated ``host:port``);
* ``BOKEH_FLASK_PUBLISHING=yes`` (and ``BOKEH_FLASK_BACKEND``, ``BOKEH_FLASK_REDIS_URL``,
  ``BOKEH_FLASK_MULTI_USER`` ...): publishing, see docs/publishing.md.
"""
import os

from bokeh_flask import create_app_from_env

_HERE = os.path.dirname(os.path.abspath(__file__))
_EXAMPLES = [os.path.join(_HERE, "examples", name) for name in ("sliders.py", "streaming.py", "dir_app")]

os.environ.setdefault("BOKEH_FLASK_APPS", os.pathsep.join(_EXAMPLES))
app = create_app_from_env()
