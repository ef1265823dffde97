"""Sine wave with sliders, a computed read-out and a click counter.

Shows Python-side ``on_change`` and ``on_click`` callbacks round-tripping
through the websocket: moving a slider recomputes the curve on the server and
writes the product amplitude x frequency into a Div; pressing the button
increments a server-side counter shown in another Div.

Run with::

    bokeh-flask serve examples/sliders.py
    # or: python -m bokeh_flask serve examples/sliders.py

then open http://localhost:5006/sliders

Stable hooks for tests (each widget carries the same string as ``name`` and
as a css class):

* ``amplitude``, ``frequency``, ``phase``, ``offset`` -- the sliders
* ``product``  -- Div reading ``amplitude × frequency = <value>``
* ``clicks``   -- Div reading ``clicks: <n>``
* ``clicker``  -- the Button
* ``sine-plot`` -- the figure, ``sine-source`` -- its ColumnDataSource
"""
import numpy as np

from bokeh.io import curdoc
from bokeh.layouts import column, row
from bokeh.models import Button, ColumnDataSource, Div, Slider
from bokeh.plotting import figure

X = np.linspace(0, 4 * np.pi, 200)


def _tagged(cls, tag, **kwargs):
    """Create a widget whose ``name`` and css class are both ``tag``."""
    return cls(name=tag, css_classes=[tag], **kwargs)


amplitude = _tagged(Slider, "amplitude", title="Amplitude", start=0.0, end=5.0, step=0.5, value=2.0)
frequency = _tagged(Slider, "frequency", title="Frequency", start=0.5, end=5.0, step=0.5, value=3.0)
phase = _tagged(Slider, "phase", title="Phase", start=0.0, end=6.0, step=0.5, value=0.0)
offset = _tagged(Slider, "offset", title="Offset", start=-3.0, end=3.0, step=0.5, value=0.0)
sliders = [amplitude, frequency, phase, offset]


def _curve():
    y = amplitude.value * np.sin(frequency.value * X + phase.value) + offset.value
    return dict(x=X, y=y)


def _product_text():
    return f"amplitude × frequency = {amplitude.value * frequency.value:.1f}"


source = ColumnDataSource(name="sine-source", data=_curve())

plot = figure(name="sine-plot", css_classes=["sine-plot"], title="y = a·sin(f·x + p) + o", height=320, width=560,
              x_range=(0, 4 * np.pi), y_range=(-8, 8), tools="pan,wheel_zoom,reset")
plot.line("x", "y", source=source, line_width=3, line_alpha=0.7)

product = _tagged(Div, "product", text=_product_text())
clicks = _tagged(Div, "clicks", text="clicks: 0")
clicker = _tagged(Button, "clicker", label="Click me", button_type="success")

state = {"clicks": 0}


def on_slider_change(attr, old, new):
    source.data = _curve()
    product.text = _product_text()


def on_click():
    state["clicks"] += 1
    clicks.text = f"clicks: {state['clicks']}"


for slider in sliders:
    slider.on_change("value", on_slider_change)
clicker.on_click(on_click)

curdoc().add_root(row(column(*sliders, product, clicker, clicks, width=260), plot))
curdoc().title = "Sliders"
