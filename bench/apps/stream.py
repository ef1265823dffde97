"""Bench app: a line plot fed by a 100 ms periodic callback.

Every 100 ms each session streams 5 new points into its ColumnDataSource
(rollover 500), so every connected client receives one PATCH-DOC carrying
a ColumnsStreamed event ten times per second.
"""
import math
import time

from bokeh.io import curdoc
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

POINTS_PER_TICK = 5

# "ts" carries the server's wall clock at tick time so the client can measure
# delivery lag (client and server run on the same machine).
source = ColumnDataSource(data={"x": [], "y": [], "ts": []}, name="bench_stream_source")
plot = figure(width=400, height=250, title="bench stream")
plot.line("x", "y", source=source)

state = {"t": 0}


def tick():
    t0 = state["t"]
    xs = [t0 + i for i in range(POINTS_PER_TICK)]
    ys = [math.sin(x / 20.0) for x in xs]
    now = time.time()
    state["t"] = t0 + POINTS_PER_TICK
    source.stream({"x": xs, "y": ys, "ts": [now] * POINTS_PER_TICK}, rollover=500)


doc = curdoc()
doc.title = "bench stream"
doc.add_root(plot)
doc.add_periodic_callback(tick, 100)
