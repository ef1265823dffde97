"""Streams 16 KiB of float64 (2048 values) into a ColumnDataSource every 100 ms."""
import numpy as np
from bokeh.io import curdoc
from bokeh.models import ColumnDataSource

TICK_MS = 100
VALUES = 2048

source = ColumnDataSource(data={"y": np.zeros(0)}, name="stream")
count = 0


def tick():
    global count
    count += 1
    source.stream({"y": np.full(VALUES, float(count))}, rollover=4 * VALUES)


curdoc().add_root(source)
curdoc().add_periodic_callback(tick, TICK_MS)
