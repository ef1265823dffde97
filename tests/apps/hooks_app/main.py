"""A directory app whose lifecycle hooks print what happens (read by the tests)."""
from bokeh.io import curdoc
from bokeh.models import Div, Slider

slider = Slider(start=0, end=10, value=1, name="slider")
div = Div(text="v=1", name="out")
slider.on_change("value", lambda attr, old, new: setattr(div, "text", f"v={new}"))
curdoc().add_root(slider)
curdoc().add_root(div)
curdoc().on_session_destroyed(lambda ctx: print(f"HOOK doc-destroyed {ctx.id}", flush=True))
