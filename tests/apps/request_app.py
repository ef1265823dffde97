"""Shows the request arguments and cookies the session was made with, and the serving process."""
import os

from bokeh.io import curdoc
from bokeh.models import Div

request = curdoc().session_context.request
n = request.arguments.get("n", [b"-"])[0].decode()
cookie = request.cookies.get("c", "-")
curdoc().add_root(Div(text=f"n={n} c={cookie} pid={os.getpid()}", name="request"))
print(f"BUILT n={n} pid={os.getpid()}", flush=True)
