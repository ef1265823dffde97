"""Publish a document to a bokeh-flask server and print its public link.

Start a publishing server, then run this script::

    bokeh-flask serve --multi-user                     # or --publishing (single-user)
    python examples/publish/publish.py --user alice --password "a long password"

The first run registers the user (later runs log in from the key saved in
``~/.bokeh``). It publishes ``quarterly``: a plot and a slider. With ``--stream N``
it then pushes a new point every second N times; every open page of the document
(the owner's and public viewers') shows each point as it is stored.
"""
import argparse
import math
import time

from bokeh.document import Document
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Slider
from bokeh.plotting import figure

from bokeh_flask.client import PublishError, Session


def quarterly_document() -> tuple[Document, ColumnDataSource]:
    source = ColumnDataSource(data={"x": [0, 1, 2, 3], "y": [1.0, 3.0, 2.0, 4.0]})
    plot = figure(title="Quarterly sales", height=300, width=600, name="sales")
    plot.line("x", "y", source=source, line_width=2)
    plot.scatter("x", "y", source=source, size=8)
    slider = Slider(start=0, end=10, value=5, step=1, title="target", name="target")
    doc = Document()
    doc.add_root(column(plot, slider))
    doc.title = "Quarterly"
    return doc, source


def log_in(session: Session, user: str | None, password: str | None) -> None:
    if session.whoami().get("username") or not session.whoami().get("multi_user"):
        return  # single-user server, or a key saved by an earlier run
    if not user or not password:
        raise SystemExit("This server has users: give --user and --password")
    try:
        session.login(user, password)
    except PublishError as error:
        if error.status not in (401,):
            raise
        session.register(user, password)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://localhost:5006/")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--stream", type=int, default=0, metavar="N", help="push N new points, one a second")
    args = parser.parse_args()

    session = Session(args.url)
    log_in(session, args.user, args.password)
    doc, source = quarterly_document()
    session.use_doc("quarterly")
    session.push(doc)
    session.publish()
    print(f"owner's page: {session.doc_url}")
    print(f"public link:  {session.public_url}")
    for step in range(args.stream):
        time.sleep(1.0)
        x = len(source.data["x"])
        source.stream({"x": [x], "y": [2.5 + 1.5 * math.sin(x / 2)]})
        session.push(doc)  # just the new point
    session.close()


if __name__ == "__main__":
    main()
