"""Bench app: a scatter plot over a 200,000-point ColumnDataSource.

The columns are float64 numpy arrays, so the document travels as JSON plus
two binary buffers of 1.6 MB each (3.2 MB in total).
"""
import numpy as np

from bokeh.io import curdoc
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

N = 200_000

rng = np.random.default_rng(12345)
x = rng.random(N)
y = rng.random(N)

source = ColumnDataSource(data={"x": x, "y": y}, name="bench_big_source")
plot = figure(width=400, height=400, title="bench 200k points", output_backend="webgl")
plot.scatter("x", "y", source=source, size=2)

doc = curdoc()
doc.title = "bench big"
doc.add_root(plot)
