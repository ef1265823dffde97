"""Shaped like bokeh's crossfilter example: Select widgets pick the axes, Python builds a new figure each time."""
import numpy as np
from bokeh.io import curdoc
from bokeh.layouts import column, row
from bokeh.models import Div, Select
from bokeh.plotting import figure

rng = np.random.default_rng(7)
COLUMNS = {"mpg": rng.uniform(10, 40, 200), "hp": rng.uniform(50, 250, 200), "weight": rng.uniform(1500, 5000, 200)}
names = sorted(COLUMNS)


def create_figure():
    p = figure(height=300, width=400, x_axis_label=x.value, y_axis_label=y.value, name="plot")
    p.scatter(COLUMNS[x.value], COLUMNS[y.value], size=6, alpha=0.6)
    status.text = f"x={x.value} y={y.value} points={len(COLUMNS[x.value])}"
    return p


def update(attr, old, new):
    layout.children[1] = create_figure()


x = Select(title="X-Axis", value="mpg", options=names, name="x", css_classes=["x-select"])
y = Select(title="Y-Axis", value="hp", options=names, name="y", css_classes=["y-select"])
status = Div(name="status", css_classes=["status"])
x.on_change("value", update)
y.on_change("value", update)
controls = column(x, y, status, width=200)
layout = row(controls, create_figure())
curdoc().add_root(layout)
curdoc().title = "Crossfilter"
