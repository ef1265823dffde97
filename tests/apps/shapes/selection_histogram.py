"""Shaped like bokeh's selection_histogram example: a selection in the scatter updates histograms in Python."""
import numpy as np
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div
from bokeh.plotting import figure

rng = np.random.default_rng(11)
x = rng.normal(0, 1, 500)
source = ColumnDataSource(data={"x": x, "y": rng.normal(0, 1, 500)}, name="points")
edges = np.linspace(-4, 4, 17)
counts, _ = np.histogram(x, bins=edges)
hist = ColumnDataSource(data={"left": edges[:-1], "right": edges[1:], "top": counts, "selected": np.zeros(16)})
plot = figure(height=300, width=300, tools="box_select,lasso_select,reset")
plot.scatter("x", "y", source=source, size=4)
bars = figure(height=200, width=300)
bars.quad(bottom=0, left="left", right="right", top="top", source=hist, alpha=0.3)
bars.quad(bottom=0, left="left", right="right", top="selected", source=hist, color="orange")
status = Div(text="selected=0", name="status", css_classes=["status"])


def update(attr, old, new):
    chosen = x[new] if len(new) else np.array([])
    hist.data["selected"] = np.histogram(chosen, bins=edges)[0] if len(chosen) else np.zeros(16)
    hist.data = dict(hist.data)
    status.text = f"selected={len(new)} in_first_bin={int(hist.data['selected'][0])}"


source.selected.on_change("indices", update)
curdoc().add_root(column(plot, bars, status))
curdoc().title = "Selection histogram"
