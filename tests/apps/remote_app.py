"""Shows the client address and scheme the server sees (for --use-xheaders)."""
from bokeh.io import curdoc
from bokeh.models import Div

request = curdoc().session_context.request
curdoc().add_root(Div(text=f"ip={request.remote_ip} protocol={request.protocol}", name="remote"))
