"""Test app for tests/test_protocol.py: every model is named so tests can find its id.

* ``slider`` -> a Python ``on_change`` writes ``value=<new>`` into the ``echo`` Div;
* ``boom`` (Button) -> its Python ``on_click`` raises ``RuntimeError``;
* ``source`` (ColumnDataSource) holds float64 numpy columns, so documents and
  patches carry binary buffers;
* a periodic callback (``TICK_MS``) bumps the ``ticker`` Div and replaces the
  ``y`` column, so server->client PATCH-DOCs (with buffers) flow all the time;
* ``lost`` (Div) counts the ``ConnectionLost`` events of this session.
"""
import numpy as np

from bokeh.events import ConnectionLost
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Button, ColumnDataSource, Div, Slider

TICK_MS = 50
N = 16

doc = curdoc()
slider = Slider(start=0, end=1000, value=1, step=1, title="value", name="slider")
echo = Div(text="value=1", name="echo")
boom = Button(label="raise", name="boom")
ticker = Div(text="0", name="ticker")
lost = Div(text="0", name="lost")
source = ColumnDataSource(
    data={"x": np.arange(N, dtype="float64"), "y": np.zeros(N, dtype="float64")}, name="source")


def on_slider(attr, old, new):
    echo.text = f"value={new}"


def on_boom():
    raise RuntimeError("boom button callback failed on purpose")


state = {"ticks": 0}


def tick():
    state["ticks"] += 1
    ticker.text = str(state["ticks"])
    source.data["y"] = np.full(N, float(state["ticks"]))


def on_lost(event):
    lost.text = str(int(lost.text) + 1)


slider.on_change("value", on_slider)
boom.on_click(on_boom)
doc.on_event(ConnectionLost, on_lost)
doc.add_root(column(slider, echo, boom, ticker, lost, name="layout"))
doc.add_root(source)
doc.add_periodic_callback(tick, TICK_MS)
