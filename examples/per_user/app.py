"""Per-user documents: a Flask view prepares a Bokeh session, then embeds it.

What it shows: for each page request the view

1. opens a new session of an app running on a bokeh-flask server with
   ``bokeh.client.pull_session(url=...)`` -- the server runs the app's code
   and this process gets a live copy of the new document;
2. customises that document for the user named in ``?user=...``: the plot
   title of the sliders app, and with ``&amplitude=...`` the amplitude slider
   (whose Python callback then recomputes the curve on the server). The
   changes travel to the server over the client's websocket;
3. waits until the server has applied them (one request/reply round trip
   on the same websocket), closes its client connection, and
4. renders a page embedding *that* session with
   ``bokeh.embed.server_session(session_id=session.id, url=...)``.

Every request gets its own session, so two users (or two tabs) never share a
document. The session must be opened in the browser before the server's
``--unused-session-lifetime`` (15 s by default) has passed.

The browser opens the session's websocket to the bokeh-flask server with
this site as ``Origin``, so that server must allow it::

    python -m bokeh_flask serve examples/sliders.py --port 5006 \\
        --allow-websocket-origin localhost:5001
    python examples/per_user/app.py --port 5001 --bokeh-url http://localhost:5006/sliders

then open http://localhost:5001/?user=alice&amplitude=1 and
http://localhost:5001/?user=bob&amplitude=4 .
``pull_session`` blocks while it talks to the Bokeh server, so this site runs
on Werkzeug's threaded server here (a development server; gunicorn's sync or
threaded workers work too). ``--port 0`` picks a free port; the log line
``Per-user site running at: http://127.0.0.1:PORT/`` tells which.
"""
import argparse
import logging
import os

from flask import Flask, render_template, request

DEFAULT_BOKEH_URL = "http://localhost:5006/sliders"

log = logging.getLogger("per_user")


def create_site(bokeh_url: str = DEFAULT_BOKEH_URL) -> Flask:
    app = Flask(__name__)

    @app.route("/")
    def page():
        from bokeh.client import pull_session
        from bokeh.embed import server_session

        user = request.args.get("user", "guest")
        amplitude = request.args.get("amplitude", type=float)
        # The session is created (and the app's code run) on the bokeh server;
        # `with` closes this client connection afterwards -- the server keeps
        # the session for the browser.
        with pull_session(url=bokeh_url) as session:
            doc = session.document
            # Change only models the app made. A model created in this process
            # (say, a new Div root) would get bokeh's next sequential id here,
            # which may already name another model of the server's document.
            doc.get_model_by_name("sine-plot").title.text = f"Sine wave for {user}"
            if amplitude is not None:
                # The app's own on_change callback runs on the server for this
                # change, recomputing the curve and the product read-out.
                doc.get_model_by_name("amplitude").value = amplitude
            # Changes are sent asynchronously: without a request/reply round
            # trip they may still be queued when the connection closes, and be
            # lost. The reply comes after the server has applied them.
            session.request_server_info()
            script = server_session(session_id=session.id, url=bokeh_url)
            session_id = session.id
        log.info("prepared session %s for user %r", session_id, user)
        return render_template("page.html", script=script, user=user, session_id=session_id)

    return app


def main(argv=None) -> None:
    from werkzeug.serving import make_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5001, help="port to listen on (0: any free port)")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--bokeh-url", default=os.environ.get("BOKEH_APP_URL", DEFAULT_BOKEH_URL),
                        help="URL of the sliders app on the bokeh-flask server")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    server = make_server(args.address, args.port, create_site(args.bokeh_url), threaded=True)
    log.info("Per-user site running at: http://%s:%d/ (sessions of %s)",
             args.address, server.server_port, args.bokeh_url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
