"""Shaped like bokeh's gapminder example: a Play button adds and removes a periodic callback moving a Slider."""
import numpy as np
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Button, ColumnDataSource, Div, Slider
from bokeh.plotting import figure

YEARS = list(range(1964, 2014))
rng = np.random.default_rng(3)
DATA = {year: {"x": rng.uniform(0, 10, 30), "y": rng.uniform(20, 80, 30)} for year in YEARS}
source = ColumnDataSource(data=DATA[YEARS[0]])
plot = figure(height=300, width=400, x_range=(0, 10), y_range=(20, 80))
plot.scatter("x", "y", source=source, size=8)
slider = Slider(start=YEARS[0], end=YEARS[-1], value=YEARS[0], step=1, title="Year", name="year")
year_text = Div(text=f"year={YEARS[0]}", name="year_text", css_classes=["year"])
button = Button(label="► Play", width=60, name="play", css_classes=["play"])
callback_id = None


def animate_update():
    year = slider.value + 1
    slider.value = year if year <= YEARS[-1] else YEARS[0]


def slider_update(attr, old, new):
    source.data = DATA[slider.value]
    year_text.text = f"year={slider.value}"


def animate():
    global callback_id
    if button.label == "► Play":
        button.label = "❚❚ Pause"
        callback_id = curdoc().add_periodic_callback(animate_update, 200)
    else:
        button.label = "► Play"
        curdoc().remove_periodic_callback(callback_id)


slider.on_change("value", slider_update)
button.on_event("button_click", animate)
curdoc().add_root(column(plot, slider, button, year_text))
curdoc().title = "Gapminder"
