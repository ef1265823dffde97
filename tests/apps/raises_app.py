"""An app that raises while building its document (line 6)."""
from bokeh.io import curdoc
from bokeh.models import Div

curdoc().add_root(Div(text="before the error"))
raise ValueError("this app is broken on purpose")
