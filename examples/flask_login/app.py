"""A Flask site whose own login guards its Bokeh apps (``BokehFlask(authorize=...)``).

The site keeps the user in ``flask.session``; ``authorize`` hands that to
bokeh-flask, which then guards the app pages, ``autoload.js`` and the
websocket (403 before the upgrade) and sends strangers to the site's
``/login``. The app sees the user in ``curdoc().session_context.request.user``.

Run it (gevent first: websockets need it)::

    python examples/flask_login/app.py --port 5000
    # open http://localhost:5000/ and log in with any name
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
from html import escape  # noqa: E402

from bokeh.models import Div  # noqa: E402
from flask import Flask, redirect, request, session, url_for  # noqa: E402

from bokeh_flask import BokehFlask, local_url  # noqa: E402


def greeting(doc):
    """A tiny app: greets whoever the site says is logged in."""
    user = doc.session_context.request.user
    doc.add_root(Div(text=f"Hello {escape(str(user))}, this document is yours.", name="greeting",
                     css_classes=["greeting"]))


def create_site() -> Flask:
    site = Flask(__name__)
    site.secret_key = os.environ.get("SITE_SECRET_KEY") or secrets.token_hex(32)

    @site.route("/")
    def home():
        user = session.get("user")
        if user is None:
            return f'<p>Not logged in. <a href="{url_for("login")}">Log in</a></p>'
        return (f"<p>Logged in as {escape(user)}. <a href='/apps/greeting'>Open the app</a> "
                f"<a href='{url_for('logout')}'>Log out</a></p>")

    @site.route("/login", methods=["GET", "POST"])
    def login():
        if request.method == "POST" and request.form.get("name"):
            session["user"] = request.form["name"]
            return redirect(local_url(request.args.get("next")))  # only a path on this site
        return ('<form method="post"><input name="name" placeholder="your name" autofocus>'
                '<button type="submit">Log in</button></form>')

    @site.route("/favicon.ico")
    def favicon():
        return redirect("/apps/favicon.ico")  # bokeh-flask serves bokeh's icon under its prefix

    @site.route("/logout")
    def logout():
        session.clear()
        return redirect("/")

    BokehFlask({"/greeting": greeting}, authorize=lambda: session.get("user"),
               login_url="/login").init_app(site, url_prefix="/apps")
    return site


def main() -> None:
    from gevent.pywsgi import WSGIServer

    parser = argparse.ArgumentParser(description="A Flask site whose login guards its Bokeh apps")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--address", default="127.0.0.1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = WSGIServer((args.address, args.port), create_site())
    server.start()
    logging.info("Site running at: http://%s:%d/", args.address, server.server_port)
    server.serve_forever()


if __name__ == "__main__":
    main()
