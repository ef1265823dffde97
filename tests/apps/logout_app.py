"""Shows the logout URL the session context offers (an auth module's ``logout_url``)."""
from bokeh.io import curdoc
from bokeh.models import Div

curdoc().add_root(Div(text=f"logout={curdoc().session_context.logout_url}", name="logout"))
