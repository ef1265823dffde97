"""A Flask site on one origin embedding a Bokeh app served by bokeh-flask on another.

What it shows: ``bokeh.embed.server_document(url)`` in an ordinary Flask view
produces a ``<script>`` that fetches ``autoload.js`` from the Bokeh server
and renders the app into this page; BokehJS then opens the app's websocket
*to the Bokeh server*, with this site as its ``Origin``. The Bokeh server
only accepts websocket origins it was told about, so start it with
``--allow-websocket-origin`` naming the host:port the browser uses for THIS
site (``localhost:5000`` below). Without it the page loads, but the
websocket is refused with 403, the app never renders, and the Bokeh server
logs ``Refusing websocket connection from Origin 'http://localhost:5000'``.

Run the two servers::

    python -m bokeh_flask serve examples/sliders.py --port 5006 \\
        --allow-websocket-origin localhost:5000
    python examples/embed/app.py --port 5000 --bokeh-url http://localhost:5006/sliders

then open http://localhost:5000/ . This site serves no websockets itself,
so it runs on Werkzeug's threaded server here (a development server: use
gunicorn or similar in production). ``--port 0`` picks a free port; the log
line ``Embedding site running at: http://127.0.0.1:PORT/`` tells which.
"""
import argparse
import logging
import os

from flask import Flask, render_template

DEFAULT_BOKEH_URL = "http://localhost:5006/sliders"


def create_site(bokeh_url: str = DEFAULT_BOKEH_URL) -> Flask:
    app = Flask(__name__)

    @app.route("/")
    def page():
        from bokeh.embed import server_document

        return render_template("page.html", script=server_document(bokeh_url), bokeh_url=bokeh_url)

    return app


def main(argv=None) -> None:
    from werkzeug.serving import make_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (0: any free port)")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--bokeh-url", default=os.environ.get("BOKEH_APP_URL", DEFAULT_BOKEH_URL),
                        help="URL of the app on the bokeh-flask server, as the browser reaches it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    server = make_server(args.address, args.port, create_site(args.bokeh_url), threaded=True)
    logging.getLogger("embed").info("Embedding site running at: http://%s:%d/ (embedding %s)",
                                    args.address, server.server_port, args.bokeh_url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
