"""A Flask page that embeds the public link of a published document.

Publish first (``python examples/publish/publish.py``), then::

    python examples/publish/site.py --port 5000 --bokeh-url http://localhost:5006/

and open http://localhost:5000/ . The bokeh-flask server must accept websockets from
this page's origin: start it with ``--allow-websocket-origin localhost:5000`` (or mount
the publishing server inside this site with ``BokehFlask(publishing=True)``, on one origin).
The page is live: run ``publish.py --stream 20`` and watch the points arrive.
"""
import argparse

from flask import Flask, render_template_string

from bokeh_flask.embed import autoload_server

PAGE = """<!DOCTYPE html>
<html lang="en">
  <head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Our quarterly numbers</title></head>
  <body>
    <h1>Our quarterly numbers</h1>
    <p>Published with bokeh-flask; this page only embeds the public link.</p>
    {{ script | safe }}
  </body>
</html>"""


def create_site(bokeh_url: str, docid: str = "quarterly") -> Flask:
    app = Flask(__name__)

    @app.route("/")
    def page() -> str:
        return render_template_string(PAGE, script=autoload_server(url=bokeh_url, docid=docid, public=True))

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--bokeh-url", default="http://localhost:5006/")
    parser.add_argument("--docid", default="quarterly")
    args = parser.parse_args()
    create_site(args.bokeh_url, args.docid).run(host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
