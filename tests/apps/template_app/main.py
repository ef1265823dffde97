"""A directory app with its own page template: its page request builds the document.

Prints ``BUILT`` per document build and ``DESTROYED`` per discarded session (read by the
tests); shows the request's ``n`` argument, ``c`` cookie and the building process, the keys
of the token payload it sees, and a button whose Python callback counts clicks.
"""
import os

from bokeh.io import curdoc
from bokeh.models import Button, Div

doc = curdoc()
context = doc.session_context
n = context.request.arguments.get("n", [b"-"])[0].decode()
cookie = context.request.cookies.get("c", "-")
clicks = Div(text="clicks: 0", name="clicks", css_classes=["clicks"])
button = Button(label="Click", name="button", css_classes=["clicker"])


def count() -> None:
    clicks.text = f"clicks: {int(clicks.text.split()[-1]) + 1}"


button.on_click(count)
doc.add_root(Div(text=f"n={n} c={cookie} pid={os.getpid()}", name="request"))
doc.add_root(Div(text=" ".join(sorted(context.token_payload)), name="payload"))
doc.add_root(button)
doc.add_root(clicks)
doc.title = "Template app"
# one write per line (print's separate newline could interleave with other workers' output)
doc.on_session_destroyed(lambda ctx: print(f"DESTROYED {ctx.id} pid={os.getpid()}\n", end="", flush=True))
print(f"BUILT n={n} session={context.id} pid={os.getpid()}\n", end="", flush=True)
