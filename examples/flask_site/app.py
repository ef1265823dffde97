"""An ordinary Flask site that also serves the example Bokeh apps.

What it shows:

* the site keeps its own pages and machinery: ``/`` is rendered from a Jinja
  template, a ``before_request`` hook counts visits in ``flask.session`` (a
  signed cookie), an ``after_request`` hook stamps every response -- the
  Bokeh routes' too -- with an ``X-Site`` header, ``/login/<name>`` stores a
  user name in the session and ``/api/status`` answers JSON;
* the apps of ``examples/`` (sliders, streaming, dir_app) are mounted under
  ``/apps`` with ``BokehFlask(...).init_app(app, url_prefix="/apps")``:
  ``/apps/`` lists them, ``/apps/sliders/`` is the full-page app, and BokehJS
  is served from ``/apps/static/``, clear of the site's own ``/static/``;
* ``/dashboard`` is a page of the site that embeds the sliders app with
  ``bokeh.embed.server_document()``, pointed at the URL ``url_for`` builds for
  ``/apps/sliders``, i.e. on the same origin.

The pages and the Bokeh websockets share one origin, so no
``allow_websocket_origin`` is needed: the websocket accepts pages served by
the host it is reached at.

Run it with gevent's WSGI server (the websockets need gevent)::

    python examples/flask_site/app.py --port 5000

then open http://localhost:5000/ . ``--port 0`` picks a free port; the log
line ``Site running at: http://127.0.0.1:PORT/`` tells which.

Or with gunicorn and bokeh-flask's gevent worker, which imports ``app`` from
this module (with several workers a page's document is built where its
websocket lands, see docs/deploy.md)::

    gunicorn -k bokeh_flask.gunicorn_worker.GeventWorker -w 2 --chdir examples/flask_site app:app
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

app = Flask(__name__)
# Signs the session cookie. Set a real secret in production.
app.secret_key = os.environ.get("SITE_SECRET_KEY", "dev-only-not-secret")

bokeh = BokehFlask(APPS)
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
    return jsonify(user=g.user, visits=session["visits"], apps=state.app_paths, sessions=state.session_count())


@app.route("/dashboard")
def dashboard():
    from bokeh.embed import server_document

    # Absolute, on the host the browser used: BokehJS opens its websocket on
    # the same origin as this page.
    script = server_document(url_for("bokeh.doc", app_path="/sliders", _external=True))
    return render_template("dashboard.html", script=script, user=g.user, visits=session["visits"])


def main(argv=None) -> None:
    import gevent
    from gevent.pywsgi import WSGIServer

    parser = argparse.ArgumentParser(description="An ordinary Flask site that also serves Bokeh apps.")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (0: any free port)")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    server = WSGIServer((args.address, args.port), app)
    server.start()
    # Leave serve_forever on SIGTERM as on Ctrl-C, so the Bokeh sessions are
    # discarded and on_server_unloaded hooks run (at exit).
    gevent.signal_handler(signal.SIGTERM, server.stop)
    logging.getLogger("flask_site").info("Site running at: http://%s:%d/", args.address, server.server_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
