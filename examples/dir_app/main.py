"""Directory-format Bokeh app: theme, custom template, static files, lifecycle hooks.

Layout::

    dir_app/
        main.py              this file (builds the document)
        theme.yaml           applied automatically: lavender plot background,
                             crimson title text
        templates/index.html extends bokeh's base template, adds a heading,
                             links static/style.css and shows static/logo.svg
        static/              served at /dir_app/static/...
        server_lifecycle.py  logs on_server_loaded / on_server_unloaded /
                             on_session_created / on_session_destroyed

Run with::

    bokeh-flask serve examples/dir_app
    # or: python -m bokeh_flask serve examples/dir_app

then open http://localhost:5006/dir_app

Stable hooks for tests: heading ``#dir-app-heading``, logo ``#dir-app-logo``,
subtitle ``#dir-app-subtitle`` (filled from ``template_variables``), figure
``name="themed-plot"``, Div ``name="greeting"``.
"""
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Div
from bokeh.plotting import figure

plot = figure(name="themed-plot", css_classes=["themed-plot"], title="Themed plot", height=300, width=500, tools="")
plot.scatter([1, 2, 3, 4, 5], [3, 1, 4, 1, 5], size=14)

greeting = Div(name="greeting", css_classes=["greeting"], text="Hello from a directory app")

doc = curdoc()
doc.add_root(column(greeting, plot))
doc.title = "Directory app"
doc.template_variables["subtitle"] = "rendered from templates/index.html"
