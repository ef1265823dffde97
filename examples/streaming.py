"""Live streaming plot driven by a server-side periodic callback.

Every 100 ms the server appends a point of a random walk to a
ColumnDataSource with ``stream(..., rollover=200)`` and updates a Div with the
number of ticks so far. No user input is needed: the browser just receives
websocket patches.

Run with::

    bokeh-flask serve examples/streaming.py
    # or: python -m bokeh_flask serve examples/streaming.py

then open http://localhost:5006/streaming

Stable hooks for tests: the Div has ``name="ticks"`` and css class ``ticks``
and reads ``ticks: <n> points: <m>``; the figure has ``name="stream-plot"``,
its ColumnDataSource ``name="stream-source"``.
"""
import random

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div
from bokeh.plotting import figure

ROLLOVER = 200

source = ColumnDataSource(name="stream-source", data=dict(t=[], y=[]))

plot = figure(name="stream-plot", css_classes=["stream-plot"], title="Random walk (rollover 200)", height=300, width=600,
              tools="pan,wheel_zoom,reset")
plot.line("t", "y", source=source, line_width=2)
plot.scatter("t", "y", source=source, size=4)

ticks = Div(name="ticks", css_classes=["ticks"], text="ticks: 0 points: 0")

state = {"tick": 0, "y": 0.0}


def update():
    state["tick"] += 1
    state["y"] += random.uniform(-1.0, 1.0)
    source.stream(dict(t=[state["tick"]], y=[state["y"]]), rollover=ROLLOVER)
    ticks.text = f"ticks: {state['tick']} points: {len(source.data['t'])}"


doc = curdoc()
doc.add_root(column(ticks, plot))
doc.add_periodic_callback(update, 100)
doc.title = "Streaming"
