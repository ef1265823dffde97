"""Bench app: the small document of the fanout metric.

A ``ColumnDataSource`` of 20 points drawn as a line, and a ``Slider``. The
fanout owner sends ``PATCH-DOC``s that set ``slider.value`` to its send time
(``time.time()``); viewers compute delivery latency from it. There are no
Python callbacks: under ``bokeh serve`` all fanout clients share one session
of this app; under ``bokeh-flask`` the bench pulls this document once and
publishes it (``PUSH-DOC``) as the shared document.
"""
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Slider
from bokeh.plotting import figure

source = ColumnDataSource(data={"x": list(range(20)), "y": [i * i % 7 for i in range(20)]}, name="fanout_source")
plot = figure(width=400, height=250, title="fanout", toolbar_location=None)
plot.line("x", "y", source=source)
slider = Slider(start=0, end=1e10, value=0, step=0.001, title="sent at", name="fanout_slider")

doc = curdoc()
doc.title = "bench fanout"
doc.add_root(column(slider, plot))
