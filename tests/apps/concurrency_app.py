"""Callbacks that block on I/O or await asyncio, chosen by the ``mode`` request argument.

``mode=blocking``: a next-tick callback sleeps (monkey-patched, so cooperative).
``mode=async``: a next-tick ``async def`` callback awaits ``asyncio.sleep``.
Both then check that ``curdoc()`` is still their own document and say so in
the ``status`` Div. Progress is printed for the tests to follow.
"""
import asyncio
import time

from bokeh.io import curdoc
from bokeh.models import Div

doc = curdoc()
status = Div(text="waiting", name="status")
doc.add_root(status)
request = doc.session_context.request if doc.session_context else None
arguments = request.arguments if request is not None else {}
mode = arguments.get("mode", [b"idle"])[0].decode()
label = arguments.get("label", [b"-"])[0].decode()
SECONDS = 1.5


def blocking():
    mine = curdoc()
    print(f"CALLBACK start {label}", flush=True)
    time.sleep(SECONDS)
    status.text = ("same-doc" if curdoc() is mine else "other-doc") + f" {label}"
    print(f"CALLBACK end {label}", flush=True)


async def awaiting():
    mine = curdoc()
    print(f"CALLBACK start {label}", flush=True)
    await asyncio.sleep(SECONDS)
    status.text = ("same-doc" if curdoc() is mine else "other-doc") + f" {label}"
    print(f"CALLBACK end {label}", flush=True)


if mode == "blocking":
    doc.add_next_tick_callback(blocking)
elif mode == "async":
    doc.add_next_tick_callback(awaiting)
