"""Shows ``sys.argv`` in a Div, to check ``--args``."""
import json
import sys

from bokeh.io import curdoc
from bokeh.models import Div

curdoc().add_root(Div(text="ARGV=" + json.dumps(sys.argv), name="argv"))
