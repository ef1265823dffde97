"""Shows which process serves the session, and counts button clicks in Python."""
import os

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Button, Div

worker = Div(text=f"pid={os.getpid()}", css_classes=["worker"])
clicks = Div(text="clicks: 0", css_classes=["clicks"])
button = Button(label="Click me", css_classes=["clicker"])
count = {"clicks": 0}


def clicked() -> None:
    count["clicks"] += 1
    clicks.text = f"clicks: {count['clicks']}"


button.on_click(clicked)
curdoc().add_root(column(worker, button, clicks))
