"""An ordinary Flask site that also serves the example Bokeh apps.

What it shows:

* the site keeps its own pages and machinery: ``/`` is rendered from a Jinja
  template, a ``before_request`` hook counts visits in ``flask.session`` (a
  signed cookie) and an ``after_request`` hook stamps every response with an
  ``X-Site`` header, ``/api/status`` answers JSON;
* the apps of ``examples/`` (sliders, streaming, dir_app) are mounted under
  ``/apps`` with ``BokehFlask(...).init_app(app, url_prefix="/apps")``:
  ``/apps/`` lists them, ``/apps/sliders/`` is the full-page app, BokehJS is
  served from ``/apps/static/`` (so it cannot collide with the site's own
  ``/static/``);
* ``/dashboard`` is a page of the site that embeds the sliders app with
  ``bokeh.embed.server_document()``, pointed at the URL ``url_for`` builds for
  ``/apps/sliders``, i.e. on the same origin.

Run it with gevent's WSGI server (websockets need gevent)::

    python examples/flask_site/app.py --port 5000

then open http://localhost:5000/ . ``--port 0`` picks a free port; the log
line ``Site running at: http://127.0.0.1:PORT/`` tells which.

Or with gunicorn's gevent worker (one worker: Bokeh sessions live in the
process that created them)::

    gunicorn -k gevent -w 1 --chdir examples/flask_site app:app

gunicorn listens on 127.0.0.1:8000, the origin this module allows by
default. Behind another host or port, name the origins the browser will use:
``BOKEH_ALLOW_WS_ORIGIN=example.com:443 gunicorn ...``.

Why origins have to be named at all: the Bokeh websocket only accepts the
origins of its allowlist, and the blueprint does not know on which host and
port the site is served. ``python app.py --port N`` puts ``localhost:N`` and
``127.0.0.1:N`` on the list itself.
"""
if __name__ == "__main__":
    # Before anything else imports socket, threading or ssl.
    from gevent import monkey

    monkey.patch_all()

import argparse
import logging
import os
import signal
from pathlib import Path

from flask import Flask, g, jsonify, redirect, render_template, request, session, url_for

from bokeh_flask import BokehFlask

EXAMPLES = Path(__file__).resolve().parent.parent

APPS = {
    "/sliders": EXAMPLES / "sliders.py",
    "/streaming": EXAMPLES / "streaming.py",
    "/dir_app": EXAMPLES / "dir_app",
}

# gunicorn's default bind; `python app.py --port N` replaces it with port N.
DEFAULT_ORIGINS = ("localhost:8000", "127.0.0.1:8000")


def create_site(ws_origins=DEFAULT_ORIGINS) -> Flask:
    """The site, with the Bokeh apps under ``/apps``.

    ``ws_origins``: the ``host:port`` values the browser may open the Bokeh
    websockets from -- the site's own address(es).
    """
    app = Flask(__name__)
    # Signs the session cookie. Use a real secret in production.
    app.secret_key = os.environ.get("SITE_SECRET_KEY", "dev-only-not-secret")

    bokeh = BokehFlask(APPS, allow_websocket_origin=list(ws_origins))
    bokeh.init_app(app, url_prefix="/apps")

    @app.before_request
    def count_visit():
        # Runs for the site's pages and for every /apps/... route as well.
        g.user = session.get("user", "guest")
        if request.endpoint in ("home", "dashboard", "status"):
            session["visits"] = session.get("visits", 0) + 1

    @app.after_request
    def stamp(response):
        response.headers["X-Site"] = "flask-site-example"
        return response

    @app.route("/")
    def home():
        apps = [(route.lstrip("/"), url_for("bokeh.doc", app_path=route)) for route in bokeh.state(app).app_paths]
        return render_template("home.html", apps=apps, visits=session["visits"], user=g.user)

    @app.route("/favicon.ico")
    def favicon():
        # Browsers ask the site root for an icon, on the Bokeh pages too; lend
        # them the one the blueprint serves.
        return redirect(url_for("bokeh.favicon"))

    @app.route("/login/<name>")
    def login(name):
        session["user"] = name
        return jsonify(user=name)

    @app.route("/api/status")
    def status():
        state = bokeh.state(app)
        return jsonify(user=g.user, visits=session["visits"], apps=state.app_paths,
                       sessions=state.session_count())

    @app.route("/dashboard")
    def dashboard():
        from bokeh.embed import server_document

        # An absolute URL on the host the browser used, so BokehJS opens its
        # websocket on the same origin as this page.
        sliders_url = url_for("bokeh.doc", app_path="/sliders", _external=True)
        script = server_document(sliders_url)
        return render_template("dashboard.html", script=script, user=g.user, visits=session["visits"])

    return app


def main(argv=None) -> None:
    import gevent
    from gevent import socket
    from gevent.pywsgi import WSGIServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (0: any free port)")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    # Bind first: with --port 0 the allowlist needs the port the OS picked.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.address, args.port))
    listener.listen(128)
    port = listener.getsockname()[1]

    site = create_site(ws_origins=[f"localhost:{port}", f"127.0.0.1:{port}"])
    server = WSGIServer(listener, site)
    # Return from serve_forever on SIGTERM too, so the Bokeh sessions are
    # discarded and on_server_unloaded hooks run (at exit) before the process ends.
    gevent.signal_handler(signal.SIGTERM, server.stop)
    logging.getLogger("flask_site").info("Site running at: http://%s:%d/", args.address, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
else:
    # What `gunicorn ... app:app` imports.
    app = create_site()
