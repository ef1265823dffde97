"""Bench app: a slider whose Python on_change callback updates a Div.

The client sends a PATCH-DOC that changes ``slider.value``; the server runs
``on_value`` and sends back a PATCH-DOC that changes ``readout.text`` to
``"v=<value>"``.  That exchange is the "slider round trip".

With ``BENCH_DOC_LOG`` set (the scaling metric does), each document built
appends one line with the process id to that file.
"""
import os

from bokeh.io import curdoc
from bokeh.models import Div, Slider

# The scaling metric counts the documents built, per server process: every
# run of this script (= one document) appends the process id to that file.
_doc_log = os.environ.get("BENCH_DOC_LOG")
if _doc_log:
    with open(_doc_log, "a") as _fh:
        _fh.write(f"{os.getpid()}\n")

slider = Slider(start=0, end=10_000_000, value=0, step=1, title="bench", name="bench_slider")
readout = Div(text="v=0", name="bench_readout")


def on_value(attr, old, new):
    readout.text = f"v={new}"


slider.on_change("value", on_value)

doc = curdoc()
doc.title = "bench slider"
doc.add_root(slider)
doc.add_root(readout)
