"""Shows who the server says is logged in (``session_context.request.user``)."""
from bokeh.io import curdoc
from bokeh.models import Div

request = curdoc().session_context.request
curdoc().add_root(Div(text=f"user={getattr(request, 'user', None)}", name="whoami"))
